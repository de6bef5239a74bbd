"""Keeping predicted clean samples inside the pixel range during sampling (SPEC §3).

With a large guidance scale the predicted ``x0`` overshoots ``[-1, 1]``; fed back into the
sampler this compounds into saturated, over-smoothed frames. Static clipping cuts at +-1.
Dynamic thresholding (Saharia et al. 2022, "Imagen", §2.3) picks per example the
``percentile``-quantile ``s`` of ``|x0|``; if ``s > 1`` it clips to ``[-s, s]`` and divides by
``s``, which pushes saturated pixels inwards instead of flattening them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

THRESHOLDINGS = ("none", "static", "dynamic")


def static_clip(x0: jax.Array) -> jax.Array:
  return jnp.clip(x0, -1.0, 1.0)


def dynamic_threshold(x0: jax.Array, percentile: float) -> jax.Array:
  """Imagen's dynamic thresholding of ``x0`` ``[b, ...]`` with ``percentile`` in (0, 1]."""
  if not 0.0 < percentile <= 1.0:
    raise ValueError(f"diffusion.dynamic_percentile must be in (0, 1], got {percentile}")
  flat = jnp.abs(x0.reshape(x0.shape[0], -1))  # b n
  s = jnp.maximum(1.0, jnp.quantile(flat.astype(jnp.float32), percentile, axis=-1))  # b
  s = s.reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
  return jnp.clip(x0, -s, s) / s


def threshold(x0: jax.Array, kind: str, percentile: float = 0.995) -> jax.Array:
  """Apply the configured thresholding ('none' | 'static' | 'dynamic')."""
  if kind == "none":
    return x0
  if kind == "static":
    return static_clip(x0)
  if kind == "dynamic":
    return dynamic_threshold(x0, percentile)
  raise ValueError(f"diffusion.thresholding must be one of {THRESHOLDINGS}, got {kind!r}")
