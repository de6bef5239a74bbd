"""Noise schedule of the continuous-time Gaussian diffusion (SPEC §3).

Time ``t`` in ``[0, 1]`` runs from clean data (``t = 0``) to almost pure noise (``t = 1``). The
schedule is written in terms of the log signal-to-noise ratio ``logsnr = log(alpha^2 / sigma^2)``
of the variance-preserving process ``x_t = alpha * x_0 + sigma * eps`` with
``alpha^2 + sigma^2 = 1`` (Kingma et al. 2021, "Variational Diffusion Models").

The cosine schedule of Nichol & Dhariwal (2021) is ``logsnr(t) = -2 log tan(pi t / 2)``. It is
infinite at both ends, so we evaluate it on the sub-interval of angles whose log-SNR lies in
``[logsnr_min, logsnr_max]``: the endpoints are hit exactly and the curve keeps its shape.

simple diffusion (Hoogeboom et al. 2023) shifts the whole curve by ``2 log(base_res / res)``
for images larger than ``base_res``: at a higher resolution neighbouring pixels are more
redundant, so the same per-pixel noise destroys less information and more noise is needed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def resolution_shift(height: int, width: int, base_res: float) -> float:
  """simple-diffusion log-SNR shift ``2 log(base_res / res)``; 0 when ``base_res`` is 0 (off).

  ``res`` is the geometric mean of height and width, i.e. the side of a square image with the
  same pixel count, so non-square frames are treated by their number of pixels.
  """
  if base_res < 0:
    raise ValueError(f"diffusion.shift_base_res must be >= 0 (0 = off), got {base_res}")
  if height <= 0 or width <= 0:
    raise ValueError(f"resolution must be positive, got height={height} width={width}")
  if base_res == 0:
    return 0.0
  res = math.sqrt(height * width)
  return 2.0 * math.log(base_res / res)


def cosine_logsnr(t: jax.Array, logsnr_min: float = -20.0, logsnr_max: float = 20.0,
                  shift: float = 0.0) -> jax.Array:
  """Clipped, optionally shifted cosine log-SNR at time ``t`` (any shape).

  ``cosine_logsnr(0) == logsnr_max + shift`` and ``cosine_logsnr(1) == logsnr_min + shift``.
  """
  if not logsnr_min < logsnr_max:
    raise ValueError(
        f"diffusion.logsnr_min ({logsnr_min}) must be < diffusion.logsnr_max ({logsnr_max})")
  # logsnr = -2 log tan(angle)  <=>  angle = atan(exp(-logsnr / 2)).
  angle_min = math.atan(math.exp(-0.5 * logsnr_max))
  angle_max = math.atan(math.exp(-0.5 * logsnr_min))
  t = jnp.asarray(t, jnp.float32)
  angle = angle_min + t * (angle_max - angle_min)
  return -2.0 * jnp.log(jnp.tan(angle)) + shift


def alpha_sigma(logsnr: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Variance-preserving ``(alpha, sigma)`` with ``alpha^2 = sigmoid(logsnr)``.

  Written with sigmoids rather than ``1 - alpha^2`` so that both stay accurate in float32 at
  the extremes of the schedule (``sigma`` ~ 5e-5 at logsnr 20).
  """
  logsnr = jnp.asarray(logsnr, jnp.float32)
  return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))


def logsnr_fn(config, height: int, width: int):
  """``t -> logsnr`` for the configured schedule at a given frame resolution.

  Args:
    config: the ``diffusion`` ConfigDict (``schedule``, ``logsnr_min``, ``logsnr_max``,
      ``shift_base_res``).
    height: frame height in pixels.
    width: frame width in pixels.
  """
  if config.schedule != "cosine":
    raise ValueError(f"diffusion.schedule must be 'cosine', got {config.schedule!r}")
  shift = resolution_shift(height, width, config.shift_base_res)
  return lambda t: cosine_logsnr(t, config.logsnr_min, config.logsnr_max, shift)


def spatial_size(shape: tuple[int, ...]) -> tuple[int, int]:
  """``(height, width)`` of an image ``[b h w c]`` or video ``[b t h w c]`` batch shape."""
  if len(shape) not in (4, 5):
    raise ValueError(
        f"expected an image batch [b, h, w, c] or a video batch [b, t, h, w, c], got shape "
        f"{tuple(shape)}")
  return shape[-3], shape[-2]


def noise_cond(t: jax.Array, logsnr: jax.Array, kind: str) -> jax.Array:
  """The scalar per example that the model's noise-level embedding sees.

  'time' gives ``1000 * t``, the range of diffusers-style timestep embeddings (useful when
  converting such checkpoints). 'logsnr' gives the log-SNR itself, which stays meaningful when
  the schedule is shifted for another resolution.
  """
  if kind == "time":
    return 1000.0 * jnp.asarray(t, jnp.float32)
  if kind == "logsnr":
    return jnp.asarray(logsnr, jnp.float32)
  raise ValueError(f"diffusion.noise_cond must be 'time' or 'logsnr', got {kind!r}")


def expand_to(a: jax.Array, x: jax.Array) -> jax.Array:
  """Reshape a per-example ``[b]`` array to broadcast against ``x`` ``[b, ...]``."""
  return jnp.reshape(a, a.shape + (1,) * (x.ndim - a.ndim))
