r"""Side by side with the public PyTorch port (`lumiere-pytorch` on KarrasUnet), one run.

Both sides train what Lumiere trains in the video stage: the T2I U-Net frozen, the temporal
layers (convs, attention at the coarsest level, temporal down/up-sampling) learned with AdamW.
Shapes are matched (`--size`, batch `--batch`) and widths comparable: our `--config` (demo:
channels 32, mult (1, 2, 2), one res block per level, attention at the two coarser levels,
temporal factors (2, 2)) against `KarrasUnet(dim=32, dim_max=64, num_downsamples=2,
num_blocks_per_stage=1, attn_res=(16, 8))` wrapped by `Lumiere` with temporal convs after
every encoder/decoder block, temporal attention on the mid blocks and temporal down/up-sampling
at the two resizing blocks. Differences that remain: our model has text cross-attention and a
text encoder (theirs is unconditional), theirs uses magnitude-preserving layers.

Measured: parameters (total and trainable), FLOPs per step, forward+backward+optimiser step
time (A/B interleaved, medians), achieved FLOP/s. FLOPs are counted the same way on both
sides, matmuls and convolutions only: ours from the jaxpr of the whole step
(`benchmarks.level_flops`), theirs with `torch.utils.flop_counter.FlopCounterMode`; XLA's
cost analysis (which adds elementwise work) is shown too.

Needs `pip install lumiere-pytorch` and `denoising-diffusion-pytorch --no-deps` (the `bench`
extra); only `karras_unet.py` of the latter is loaded, so torchvision and friends are not
needed.

  python -m benchmarks.vs_lumiere_pytorch
  python -m benchmarks.vs_lumiere_pytorch --quick
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
import types

from absl import app
from absl import flags
import jax

from benchmarks import common
from benchmarks import level_flops
from benchmarks import train_setup
from stunet.train import measure

_CONFIG = flags.DEFINE_string("config", "demo", "Our config (widths).")
_SIZE = flags.DEFINE_string("size", "16x32x32", "TxHxW of the clips (H = W).")
_BATCH = flags.DEFINE_integer("batch", 1, "Clips per step.")
_KARRAS_DIM = flags.DEFINE_integer("karras_dim", 32, "KarrasUnet dim.")
_KARRAS_DIM_MAX = flags.DEFINE_integer("karras_dim_max", 64, "KarrasUnet dim_max.")
_KARRAS_DOWNSAMPLES = flags.DEFINE_integer("karras_downsamples", 2, "KarrasUnet downsamples.")
_KARRAS_BLOCKS = flags.DEFINE_integer("karras_blocks", 1, "KarrasUnet num_blocks_per_stage.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved A/B rounds (after one warm-up each).")
_TORCH_THREADS = flags.DEFINE_integer(
    "torch_threads", 1, "torch intra-op threads (0 = its default, all cores). On a shared, "
    "oversubscribed machine OpenMP spin-waiting made 2 threads >10x slower than 1.")
_QUICK = flags.DEFINE_bool("quick", False, "Two-level tiny widths and 4x8x8 clips: a smoke run.")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/results/vs_lumiere_pytorch.md",
                              "Markdown results ('' = print only).")


def import_karras_unet():
  """`KarrasUnet` without running `denoising_diffusion_pytorch/__init__.py` (which imports
  torchvision, accelerate, ...): the package is registered bare and the one module loaded."""
  if "denoising_diffusion_pytorch" not in sys.modules:
    spec = importlib.util.find_spec("denoising_diffusion_pytorch")
    if spec is None:
      raise ImportError("pip install lumiere-pytorch and "
                        "'denoising-diffusion-pytorch' --no-deps (see the module doc)")
    package = types.ModuleType("denoising_diffusion_pytorch")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["denoising_diffusion_pytorch"] = package
  from denoising_diffusion_pytorch.karras_unet import KarrasUnet  # pylint: disable=import-outside-toplevel
  return KarrasUnet


class TorchLumiere:
  """lumiere-pytorch's Lumiere around a KarrasUnet, with an AdamW step on its temporal
  parameters and a v-prediction-style MSE loss."""

  def __init__(self, frames: int, size: int, batch: int, dim: int, dim_max: int,
               downsamples: int, blocks: int):
    import torch  # pylint: disable=import-outside-toplevel
    from lumiere_pytorch import Lumiere  # pylint: disable=import-outside-toplevel
    self.torch = torch
    torch.manual_seed(0)
    karras = import_karras_unet()
    attn_res = tuple(size // 2 ** k for k in range(1, downsamples + 1))
    unet = karras(image_size=size, dim=dim, dim_max=dim_max, channels=3,
                  num_downsamples=downsamples, num_blocks_per_stage=blocks, attn_res=attn_res,
                  dropout=0.0)
    self.t2i_params = sum(p.numel() for p in unet.parameters())
    downs = [f"downs.{i}" for i, m in enumerate(unet.downs) if m.downsample]
    ups = [f"ups.{i}" for i, m in enumerate(unet.ups) if m.upsample]
    convs = ([f"downs.{i}" for i, m in enumerate(unet.downs) if not m.downsample]
             + [f"ups.{i}" for i, m in enumerate(unet.ups) if not m.upsample])
    self.model = Lumiere(unet, image_size=size, unet_time_kwarg="time",
                         conv_module_names=convs, attn_module_names=["mids.0", "mids.1"],
                         downsample_module_names=downs, upsample_module_names=ups)
    self.trainable = list(self.model.parameters())
    self.trainable_params = sum(p.numel() for p in self.trainable)
    self.optimizer = torch.optim.AdamW(self.trainable, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    self.video = torch.randn(batch, 3, frames, size, size, generator=gen)
    self.noise = torch.randn(batch, 3, frames, size, size, generator=gen)
    self.time = torch.rand(batch, generator=gen)

  def step(self):
    torch = self.torch
    alpha = torch.cos(self.time * torch.pi / 2).view(-1, 1, 1, 1, 1)
    sigma = torch.sin(self.time * torch.pi / 2).view(-1, 1, 1, 1, 1)
    x_t = alpha * self.video + sigma * self.noise
    target = alpha * self.noise - sigma * self.video
    loss = torch.mean((self.model(x_t, time=self.time) - target) ** 2)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return float(loss)

  def count_flops(self) -> float:
    from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=import-outside-toplevel
    with FlopCounterMode(display=False) as counter:
      self.step()
    return float(counter.get_total_flops())


class JaxStep:
  """Our video-stage train step at the same shape."""

  def __init__(self, name: str, frames: int, size: int, batch: int,
               model_overrides: dict | None = None):
    config = train_setup.benchmark_config(name, frames=frames, resolution=size, batch=batch,
                                          dtype="float32", **(model_overrides or {}))
    self.bench = train_setup.TrainStepSetup(config)
    self.compiled = self.bench.compile_abstract()
    abstract = self.bench.abstract_state()
    counts = measure.param_counts(abstract.params, self.bench.setup.labels)
    self.params, self.trainable_params = counts["all"], counts["trainable"]
    self.unet_params = counts["unet"]
    with jax.set_mesh(self.bench.mesh):
      by_path = level_flops.flops_by_path(self.bench.setup.step_fn(), abstract,
                                          self.bench.abstract_batch())
    self.matmul_conv_flops = sum(by_path.values())
    self.xla_flops = measure.flops(self.compiled)
    self.state = measure.random_like(abstract)
    self.batch = self.bench.make_batch()

  def step(self):
    self.state, _ = self.bench.run_steps(self.state, self.batch, 1)


def main(argv):
  del argv
  quick = _QUICK.value
  if _TORCH_THREADS.value:
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(_TORCH_THREADS.value)
  name = "tiny" if quick else _CONFIG.value
  frames, size = (4, 8) if quick else train_setup.parse_case(f"x:{_SIZE.value}")[1:3]
  if quick:
    dim, dim_max, downsamples, blocks, rounds = 16, 32, 1, 1, 2
  else:
    dim, dim_max = _KARRAS_DIM.value, _KARRAS_DIM_MAX.value
    downsamples, blocks, rounds = _KARRAS_DOWNSAMPLES.value, _KARRAS_BLOCKS.value, _ROUNDS.value
  batch = _BATCH.value
  machine = common.machine_info()
  import torch  # pylint: disable=import-outside-toplevel
  print(f"machine: {machine}; torch {torch.__version__} with {torch.get_num_threads()} threads",
        flush=True)

  ours = JaxStep(name, frames, size, batch, train_setup.QUICK_MODEL if quick else None)
  theirs = TorchLumiere(frames, size, batch, dim, dim_max, downsamples, blocks)
  theirs_flops = theirs.count_flops()  # also their warm-up step
  ours.step()  # warm-up
  times = {"ours": [], "theirs": []}
  for _ in range(rounds):
    for side, fn in (("ours", ours.step), ("theirs", theirs.step)):
      start = time.perf_counter()
      fn()
      times[side].append(time.perf_counter() - start)
  peak = common.measure_matmul_peak(512 if quick else 2048)
  ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["theirs"])
  ours_rate, theirs_rate = ours.matmul_conv_flops / ours_s, theirs_flops / theirs_s

  rows = [
      ["stunet (JAX/Flax)", f"{name} config", f"{common.si(ours.params)} "
       f"(U-Net {common.si(ours.unet_params)})", common.si(ours.trainable_params),
       common.si(ours.matmul_conv_flops), common.si(ours.xla_flops), f"{ours_s:.3f}",
       common.si(ours_rate, "FLOP/s"), f"{100 * ours_rate / peak:.1f}%"],
      ["lumiere-pytorch (KarrasUnet)", f"dim {dim}, dim_max {dim_max}, {downsamples} "
       f"downsamples, {blocks} block(s)/stage",
       f"{common.si(theirs.t2i_params + theirs.trainable_params)}",
       common.si(theirs.trainable_params), common.si(theirs_flops), "-", f"{theirs_s:.3f}",
       common.si(theirs_rate, "FLOP/s"), f"{100 * theirs_rate / peak:.1f}%"],
  ]
  command = (f"python -m benchmarks.vs_lumiere_pytorch --quick={quick} --config={name} "
             f"--size={frames}x{size}x{size} --batch={batch} --karras_dim={dim} "
             f"--karras_dim_max={dim_max} --karras_downsamples={downsamples} "
             f"--karras_blocks={blocks} --rounds={rounds}")
  report = "\n".join([
      "# stunet vs lumiere-pytorch: one video-stage train step", "",
      f"Command: `{command}`", "",
      f"Machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
      f"float32 matmul peak measured in this run {common.si(peak, 'FLOP/s')}.", "",
      common.NOISY_MACHINE_NOTE, "",
      f"Video {batch}x{frames}x{size}x{size}x3 on both sides; {rounds} interleaved A/B rounds "
      "after a warm-up step each; step = forward + backward + AdamW on the temporal "
      "parameters (plus our EMA).", "",
      common.markdown_table(
          ["implementation", "widths", "params (total)", "trainable", "matmul+conv FLOPs/step",
           "XLA FLOPs/step", "step s (median)", "achieved FLOP/s (matmul+conv)",
           "of matmul peak"], rows), "",
      f"Ratios (ours / theirs): step time {ours_s / theirs_s:.2f}, achieved FLOP/s "
      f"{ours_rate / theirs_rate:.2f}, FLOPs/step {ours.matmul_conv_flops / theirs_flops:.2f}.",
      "", f"Step times (s): ours {[round(t, 3) for t in times['ours']]}, theirs "
      f"{[round(t, 3) for t in times['theirs']]}.", ""])
  print(report)
  common.write_report(report, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
