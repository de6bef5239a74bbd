"""DDIM and DDPM ancestral samplers for the continuous-time diffusion (SPEC §3).

Both walk a uniform time grid ``t_start = t_N > ... > t_0 = 0`` in ``steps`` model calls. At
each step the (guided) model output is turned into ``(x0_hat, eps_hat)``, ``x0_hat`` is
optionally thresholded, and ``x`` moves from level ``t`` to ``s``. With
``r = snr(t) / snr(s) = exp(logsnr_t - logsnr_s)``:

- DDPM ancestral (Ho et al. 2020, in the continuous-time form of Kingma et al. 2021) samples
  the posterior ``q(x_s | x_t, x0 = x0_hat)``: mean ``alpha_t sigma_s^2 / (alpha_s sigma_t^2)
  x_t + alpha_s (1 - r) x0_hat``, variance ``sigma_s^2 (1 - r)``.
- DDIM (Song et al. 2021) sets ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z``
  with ``c^2 = eta^2 sigma_s^2 (1 - r)``: ``eta = 0`` is deterministic, ``eta = 1`` is exactly
  the DDPM step above (a test checks this).

The last step returns ``x0_hat`` itself rather than a sample at the clipped ``logsnr_max``
level, whose residual noise (sigma ~ 5e-5) would only add grain.

``sample`` is a pure function of its key (noise for step ``i`` comes from ``fold_in(key, i)``)
and is traceable, so callers wrap it in ``jax.jit``; the loop is a ``lax.fori_loop``, so the
model is traced once whatever the number of steps.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import noise as noise_lib
from stunet.diffusion import parameterization
from stunet.diffusion import schedules
from stunet.diffusion import thresholding as thresholding_lib

SAMPLERS = ("ddim", "ddpm")


def ddim_step(x0_hat, eps_hat, logsnr_t, logsnr_s, eta, noise):
  """One DDIM move from level ``logsnr_t`` to the less noisy ``logsnr_s``."""
  alpha_s, sigma_s = schedules.alpha_sigma(logsnr_s)
  one_minus_r = -jnp.expm1(logsnr_t - logsnr_s)
  c = eta * sigma_s * jnp.sqrt(one_minus_r)
  # sqrt(sigma_s^2 - c^2), written so it cannot go negative through rounding.
  eps_scale = sigma_s * jnp.sqrt(1.0 - eta**2 * one_minus_r)
  return (schedules.expand_to(alpha_s, x0_hat) * x0_hat
          + schedules.expand_to(eps_scale, x0_hat) * eps_hat
          + schedules.expand_to(c, x0_hat) * noise)


def ddpm_step(x_t, x0_hat, logsnr_t, logsnr_s, noise):
  """One ancestral step: a sample of ``q(x_s | x_t, x0 = x0_hat)``."""
  alpha_t, sigma_t = schedules.alpha_sigma(logsnr_t)
  alpha_s, sigma_s = schedules.alpha_sigma(logsnr_s)
  one_minus_r = -jnp.expm1(logsnr_t - logsnr_s)
  coef_xt = alpha_t * sigma_s**2 / (alpha_s * sigma_t**2)
  coef_x0 = alpha_s * one_minus_r
  std = sigma_s * jnp.sqrt(one_minus_r)
  return (schedules.expand_to(coef_xt, x_t) * x_t + schedules.expand_to(coef_x0, x_t) * x0_hat
          + schedules.expand_to(std, x_t) * noise)


def sample(key: jax.Array, denoise_fn: guidance_lib.DenoiseFn, shape: tuple[int, ...],
           text_emb: jax.Array, text_mask: jax.Array, null_emb: jax.Array,
           null_mask: jax.Array, *, config, steps: int | None = None,
           sampler: str | None = None, eta: float | None = None, guidance=None,
           thresholding: str | None = None,
           callback: Callable[[int, object], None] | None = None,
           x_init: jax.Array | None = None, t_start: float = 1.0) -> jax.Array:
  """Generate images ``[b h w c]`` or videos ``[b t h w c]`` in ``[-1, 1]``.

  Args:
    key: PRNG key; the result is a deterministic function of it.
    denoise_fn: ``(x_t, noise_cond [b], text_emb, text_mask) -> prediction`` (the model with
      its variables closed over, ``train=False``).
    shape: output shape; ``shape[0]`` is the batch.
    text_emb, text_mask: ``[b L d]``, ``[b L]`` conditioning text.
    null_emb, null_mask: null text ``[L d]``/``[L]`` (or batched) for guidance.
    config: the ``diffusion`` ConfigDict; supplies every option left as None below.
    steps: number of model evaluations (Python int).
    sampler: 'ddim' or 'ddpm'.
    eta: DDIM stochasticity in [0, 1] (ignored by 'ddpm').
    guidance: classifier-free guidance scale w (may be a traced scalar).
    thresholding: 'none' | 'static' | 'dynamic' on ``x0_hat``.
    callback: called on the host as ``callback(step, x)`` after each step (``step`` 1..steps,
      ``x`` the current sample) through ``jax.debug.callback``; ``x`` is copied to the host
      every step, so keep the callback for progress bars and previews.
    x_init: optional clean input of ``shape`` (SDEdit): sampling starts from it noised to
      level ``t_start`` instead of from pure noise.
    t_start: starting time in (0, 1]; with ``x_init`` None, 1 means pure noise.

  Returns:
    The final ``x0_hat`` (float32).
  """
  steps = config.sample_steps if steps is None else steps
  sampler = config.sampler if sampler is None else sampler
  eta = config.eta if eta is None else eta
  guidance = config.guidance if guidance is None else guidance
  thresholding = config.thresholding if thresholding is None else thresholding
  if sampler not in SAMPLERS:
    raise ValueError(f"diffusion.sampler must be one of {SAMPLERS}, got {sampler!r}")
  if not isinstance(steps, int) or steps < 1:
    raise ValueError(f"diffusion.sample_steps must be a positive integer, got {steps!r}")
  if isinstance(eta, (int, float)) and not 0.0 <= eta <= 1.0:
    raise ValueError(f"diffusion.eta must be in [0, 1], got {eta}")
  if thresholding not in thresholding_lib.THRESHOLDINGS:
    raise ValueError(f"diffusion.thresholding must be one of "
                     f"{thresholding_lib.THRESHOLDINGS}, got {thresholding!r}")
  if not 0.0 < t_start <= 1.0:
    raise ValueError(f"t_start must be in (0, 1], got {t_start}")
  parameterization.check_prediction(config.prediction)
  shape = tuple(shape)
  height, width = schedules.spatial_size(shape)
  if text_emb.shape[0] != shape[0] or text_mask.shape != text_emb.shape[:2]:
    raise ValueError(
        f"text_emb {tuple(text_emb.shape)} / text_mask {tuple(text_mask.shape)} do not match "
        f"batch {shape[0]} (expected [b, L, d] and [b, L])")
  if x_init is not None and tuple(x_init.shape) != shape:
    raise ValueError(f"x_init shape {tuple(x_init.shape)} does not match shape {shape}")

  b = shape[0]
  logsnr_of = schedules.logsnr_fn(config, height, width)
  init_key, loop_key = jax.random.split(key)
  # A video's frames share part of their noise when the model was trained so
  # (`diffusion.frame_noise_correlation`), at the start and in every stochastic step.
  rho = config.get("frame_noise_correlation", 0.0)
  start_noise = noise_lib.gaussian(init_key, shape, jnp.float32, rho)
  if x_init is None and t_start == 1.0:
    x = start_noise
  else:
    base = jnp.zeros(shape, jnp.float32) if x_init is None else x_init.astype(jnp.float32)
    alpha, sigma = schedules.alpha_sigma(logsnr_of(jnp.float32(t_start)))
    x = alpha * base + sigma * start_noise

  def body(i, x):
    t = t_start * (steps - i) / steps
    s = t_start * (steps - i - 1) / steps
    logsnr_t = jnp.full((b,), logsnr_of(t), jnp.float32)
    logsnr_s = jnp.full((b,), logsnr_of(s), jnp.float32)
    cond = schedules.noise_cond(jnp.full((b,), t, jnp.float32), logsnr_t, config.noise_cond)
    prediction = guidance_lib.guided_prediction(
        denoise_fn, x, cond, text_emb, text_mask, null_emb, null_mask, guidance)
    prediction = prediction.astype(jnp.float32)
    alpha_t, sigma_t = schedules.alpha_sigma(logsnr_t)
    alpha_t = schedules.expand_to(alpha_t, x)
    sigma_t = schedules.expand_to(sigma_t, x)
    x0_hat, eps_hat = parameterization.to_x0_eps(prediction, x, alpha_t, sigma_t,
                                                 config.prediction)
    if thresholding != "none":
      x0_hat = thresholding_lib.threshold(x0_hat, thresholding, config.dynamic_percentile)
      # Keep eps consistent with the thresholded x0 so the step stays on the same x_t.
      eps_hat = parameterization.eps_from_x0(x, x0_hat, alpha_t, sigma_t)
    noise = noise_lib.gaussian(jax.random.fold_in(loop_key, i), shape, jnp.float32, rho)
    if sampler == "ddim":
      x_s = ddim_step(x0_hat, eps_hat, logsnr_t, logsnr_s, eta, noise)
    else:
      x_s = ddpm_step(x, x0_hat, logsnr_t, logsnr_s, noise)
    x = jnp.where(i == steps - 1, x0_hat, x_s)
    if callback is not None:
      jax.debug.callback(callback, i + 1, x)
    return x

  return jax.lax.fori_loop(0, steps, body, x)
