"""The Gaussian noise of the forward process, optionally correlated across a video's frames.

With ``diffusion.frame_noise_correlation = rho > 0`` a video's noise is PYoCo's "mixed" noise
prior (Ge et al. 2023, "Preserve Your Own Correlation: A Noise Prior for Video Diffusion
Models"): every frame gets ``sqrt(rho) shared + sqrt(1 - rho) own``, one draw shared by the
clip's frames and one per frame. Each frame's noise is still standard normal, so the inflated
T2I model sees the noise it was trained on, but two frames' noises correlate with coefficient
``rho``: frames denoised from correlated noise start out alike, which is what a video model
fine-tuned from an image model would otherwise have to learn from scratch. ``rho = 0`` (the
default, and the paper's setting) draws exactly the independent noise of before. Images
(``[b h w c]``) always get independent noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gaussian(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32,
             frame_correlation: float = 0.0) -> jax.Array:
  """Standard normal noise of ``shape``; a video's ``[b t h w c]`` frames correlate with
  coefficient ``frame_correlation`` in [0, 1) (module doc)."""
  shape = tuple(shape)
  rho = float(frame_correlation)
  if not 0.0 <= rho < 1.0:
    raise ValueError(f"diffusion.frame_noise_correlation must be in [0, 1), got {rho!r}")
  if rho == 0.0 or len(shape) != 5:
    return jax.random.normal(key, shape, dtype)
  shared_key, own_key = jax.random.split(key)
  b, _, h, w, c = shape
  shared = jax.random.normal(shared_key, (b, 1, h, w, c), jnp.float32)
  own = jax.random.normal(own_key, shape, jnp.float32)
  return (jnp.sqrt(rho) * shared + jnp.sqrt(1.0 - rho) * own).astype(dtype)
