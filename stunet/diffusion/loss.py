"""The denoising training loss (SPEC §3).

Per example: draw ``t``, noise ``eps``, form ``x_t = alpha x0 + sigma eps``, maybe swap the
caption for the null text (classifier-free guidance), and regress the model output onto the
target of the configured parameterization with a mean squared error over all non-batch dims.

Weightings. Every target's MSE is a multiple of the x0 MSE: ``mse_eps = snr * mse_x0`` and
``mse_v = (snr + 1) * mse_x0``. A weighting names the effective weight on ``mse_x0``, so it means
the same thing whatever the model predicts:

- 'none': plain MSE on the model's own target (v-MSE for v-prediction, the usual choice).
- 'v':    weight ``snr + 1`` on ``mse_x0`` (v-MSE whatever the parameterization).
- 'eps':  weight ``snr`` on ``mse_x0`` (eps-MSE, Ho et al. 2020's "simple" loss).
- 'min_snr': weight ``min(snr, gamma)`` on ``mse_x0`` (Hang et al. 2023, "Efficient Diffusion
  Training via Min-SNR Weighting"): caps the weight of nearly clean levels, which otherwise
  dominate the gradient while teaching little.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import noise as noise_lib
from stunet.diffusion import parameterization
from stunet.diffusion import schedules

WEIGHTINGS = ("none", "v", "eps", "min_snr")
TIME_SAMPLINGS = ("low_discrepancy", "uniform")


def sample_times(rng: jax.Array, batch_size: int, kind: str = "low_discrepancy") -> jax.Array:
  """``t`` ``[b]`` in ``[0, 1)``.

  'low_discrepancy' (Kingma et al. 2021, VDM): one uniform offset plus an evenly spaced grid,
  so a batch covers all noise levels and the loss estimate has lower variance.
  """
  u = jax.random.uniform(rng, (1 if kind == "low_discrepancy" else batch_size,))
  if kind == "low_discrepancy":
    return jnp.mod(u + jnp.arange(batch_size, dtype=jnp.float32) / batch_size, 1.0)
  if kind == "uniform":
    return u
  raise ValueError(f"diffusion.time_sampling must be one of {TIME_SAMPLINGS}, got {kind!r}")


def _log_target_factor(logsnr: jax.Array, prediction: str) -> jax.Array:
  """log of ``mse_target / mse_x0`` for the model's parameterization."""
  if prediction == "v":
    return jax.nn.softplus(logsnr)  # log(snr + 1)
  if prediction == "eps":
    return logsnr
  return jnp.zeros_like(logsnr)


def loss_weight(logsnr: jax.Array, prediction: str, weighting: str,
                min_snr_gamma: float = 5.0) -> jax.Array:
  """Multiplier on the target MSE realising ``weighting`` (see module doc); ``[b]``.

  Computed in log space: snr spans e^-20..e^20, where ratios like ``snr / (snr + 1)`` lose all
  precision if formed directly.
  """
  parameterization.check_prediction(prediction)
  logsnr = jnp.asarray(logsnr, jnp.float32)
  if weighting == "none":
    return jnp.ones_like(logsnr)
  if weighting == "v":
    log_x0_weight = jax.nn.softplus(logsnr)
  elif weighting == "eps":
    log_x0_weight = logsnr
  elif weighting == "min_snr":
    log_x0_weight = jnp.minimum(logsnr, jnp.log(min_snr_gamma))
  else:
    raise ValueError(f"diffusion.loss_weighting must be one of {WEIGHTINGS}, got {weighting!r}")
  return jnp.exp(log_x0_weight - _log_target_factor(logsnr, prediction))


def diffusion_loss(rng: jax.Array, denoise_fn: guidance_lib.DenoiseFn, x0: jax.Array,
                   text_emb: jax.Array, text_mask: jax.Array, config,
                   null_emb: jax.Array | None = None,
                   null_mask: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
  """Per-example denoising loss.

  Args:
    rng: PRNG key (times, noise and text dropout are drawn from it).
    denoise_fn: ``(x_t, noise_cond [b], text_emb, text_mask) -> prediction``; the model with
      its variables and dropout rngs closed over.
    x0: clean images ``[b h w c]`` or videos ``[b t h w c]`` in ``[-1, 1]``.
    text_emb: ``[b L d]`` caption embeddings.
    text_mask: ``[b L]`` bool, True at real tokens.
    config: the ``diffusion`` ConfigDict.
    null_emb: null text ``[L d]`` (or ``[b L d]``) for dropped captions; default zeros.
    null_mask: its mask ``[L]`` (or ``[b L]``); default valid at position 0 only.

  Returns:
    ``(loss [b] float32, aux)``; aux holds per-example ``t``, ``logsnr``, unweighted ``mse``,
    ``weight`` and ``text_dropped``. Average ``loss`` over the (global) batch in the caller.
  """
  parameterization.check_prediction(config.prediction)
  height, width = schedules.spatial_size(x0.shape)
  if text_emb.shape[0] != x0.shape[0] or text_mask.shape != text_emb.shape[:2]:
    raise ValueError(
        f"text_emb {tuple(text_emb.shape)} / text_mask {tuple(text_mask.shape)} do not match "
        f"x0 batch {x0.shape[0]} (expected [b, L, d] and [b, L])")
  b = x0.shape[0]
  t_rng, noise_rng, drop_rng = jax.random.split(rng, 3)

  t = sample_times(t_rng, b, config.time_sampling)  # b
  logsnr = schedules.logsnr_fn(config, height, width)(t)  # b
  alpha, sigma = schedules.alpha_sigma(logsnr)
  alpha = schedules.expand_to(alpha, x0).astype(x0.dtype)
  sigma = schedules.expand_to(sigma, x0).astype(x0.dtype)
  eps = noise_lib.gaussian(noise_rng, x0.shape, x0.dtype,
                          config.get("frame_noise_correlation", 0.0))
  x_t = alpha * x0 + sigma * eps

  dropped = jnp.zeros((b,), jnp.bool_)
  if config.cond_drop > 0:
    if null_emb is None or null_mask is None:
      null_emb, null_mask = guidance_lib.null_text(text_emb.shape[1], text_emb.shape[2],
                                                   text_emb.dtype)
    text_emb, text_mask, dropped = guidance_lib.drop_text(
        drop_rng, text_emb, text_mask, config.cond_drop, null_emb, null_mask)

  cond = schedules.noise_cond(t, logsnr, config.noise_cond)
  prediction = denoise_fn(x_t, cond, text_emb, text_mask).astype(jnp.float32)
  if prediction.shape != x0.shape:
    raise ValueError(
        f"denoise_fn returned shape {tuple(prediction.shape)}, expected {tuple(x0.shape)}")
  target = parameterization.training_target(
      x0.astype(jnp.float32), eps.astype(jnp.float32), alpha.astype(jnp.float32),
      sigma.astype(jnp.float32), config.prediction)
  mse = jnp.mean(jnp.square(prediction - target), axis=tuple(range(1, x0.ndim)))  # b
  weight = loss_weight(logsnr, config.prediction, config.loss_weighting, config.min_snr_gamma)
  aux = {"t": t, "logsnr": logsnr, "mse": mse, "weight": weight, "text_dropped": dropped}
  return weight * mse, aux
