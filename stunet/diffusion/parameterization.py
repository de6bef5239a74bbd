"""What the denoiser predicts: x0, epsilon or v, and exact conversions between them (SPEC §3).

With ``x_t = alpha x0 + sigma eps`` and ``alpha^2 + sigma^2 = 1``, the velocity is
``v = alpha eps - sigma x0`` (Salimans & Ho 2022, "Progressive Distillation"). The map
``(x0, eps) -> (x_t, v)`` is a rotation by the angle ``atan(sigma / alpha)``, so converting
from v needs no division and stays well conditioned at every noise level: this is why Imagen
Video uses v-prediction and why it is our default.

All functions take ``alpha`` and ``sigma`` already broadcast against ``x_t`` (see
``schedules.expand_to``) and work for images and videos alike.
"""

from __future__ import annotations

import jax

PREDICTIONS = ("v", "eps", "x0")


def v_from_x0_eps(x0: jax.Array, eps: jax.Array, alpha: jax.Array,
                  sigma: jax.Array) -> jax.Array:
  return alpha * eps - sigma * x0


def x0_from_v(x_t: jax.Array, v: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
  return alpha * x_t - sigma * v


def eps_from_v(x_t: jax.Array, v: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
  return sigma * x_t + alpha * v


def x0_from_eps(x_t: jax.Array, eps: jax.Array, alpha: jax.Array,
                sigma: jax.Array) -> jax.Array:
  return (x_t - sigma * eps) / alpha


def eps_from_x0(x_t: jax.Array, x0: jax.Array, alpha: jax.Array,
                sigma: jax.Array) -> jax.Array:
  return (x_t - alpha * x0) / sigma


def check_prediction(kind: str) -> None:
  if kind not in PREDICTIONS:
    raise ValueError(f"diffusion.prediction must be one of {PREDICTIONS}, got {kind!r}")


def training_target(x0: jax.Array, eps: jax.Array, alpha: jax.Array, sigma: jax.Array,
                    kind: str) -> jax.Array:
  """The regression target of a model that predicts ``kind``."""
  check_prediction(kind)
  if kind == "v":
    return v_from_x0_eps(x0, eps, alpha, sigma)
  if kind == "eps":
    return eps
  return x0


def to_x0_eps(prediction: jax.Array, x_t: jax.Array, alpha: jax.Array, sigma: jax.Array,
              kind: str) -> tuple[jax.Array, jax.Array]:
  """``(x0, eps)`` implied by a model output of type ``kind`` at ``x_t``."""
  check_prediction(kind)
  if kind == "v":
    return x0_from_v(x_t, prediction, alpha, sigma), eps_from_v(x_t, prediction, alpha, sigma)
  if kind == "eps":
    return x0_from_eps(x_t, prediction, alpha, sigma), prediction
  return prediction, eps_from_x0(x_t, prediction, alpha, sigma)
