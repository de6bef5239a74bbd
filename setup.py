"""stunet: a JAX/Flax reimplementation of Lumiere's Space-Time U-Net."""

import setuptools

CORE = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "tensorflow-datasets>=4.9.10",
    "array-record>=0.8.1",
    "grain>=0.2.18",
    "ml-collections>=1.1.0",
    "numpy>=2.0",
    "absl-py>=2.1",
    "tqdm>=4.66",
    "pillow>=10.0",
    "scipy>=1.11",
    # TensorBoard event files without TensorFlow.
    "tensorboardX>=2.6",
]

EXTRAS = {
    # Test runner (and the plotting the ablation and benchmark tests check); the CI installs
    # `.[test,video,parity,tpu]`. pytest-xdist: the suite is compile-bound and XLA's CPU
    # compiler uses about one core (run serially: 37 min CPU in 32 min wall on 2 cores), so
    # the README command runs one worker per core.
    "test": ["pytest>=8.0", "pytest-xdist>=3.5", "filelock>=3.12", "matplotlib>=3.8"],
    # Plots of experiments/ablate.py and the benchmarks.
    "plot": ["matplotlib>=3.8"],
    # Video decoding/encoding for user datasets and sample writing (PyAV wraps FFmpeg).
    "video": ["av>=12.0"],
    # Compile-only TPU backend for the AOT pod-fit check (no TPU needed).
    "tpu": ["jax[tpu]>=0.10.2"],
    # PyTorch references for parity tests. Install torch==2.13.0 first (CPU build) so that
    # diffusers/transformers do not pull a CUDA build.
    "parity": ["torch==2.13.0", "diffusers>=0.30", "transformers>=4.40", "safetensors>=0.4",
               "sentencepiece>=0.2"],
    # Side-by-side benchmarks and plots. Install torch==2.13.0 (CPU) first, then
    # `pip install --no-deps denoising-diffusion-pytorch` (only its KarrasUnet module is used;
    # its own requirements pull torchvision and a CUDA torch).
    "bench": ["matplotlib>=3.8", "lumiere-pytorch>=0.0.24"],
}

setuptools.setup(
    name="stunet",
    version="0.1.0",
    description="Lumiere's Space-Time U-Net (STUNet) text-to-video diffusion in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["stunet", "stunet.*"]),
    install_requires=CORE,
    extras_require=EXTRAS,
)
