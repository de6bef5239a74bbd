"""Spatial super-resolution conditioning (SPEC §4): what the SSR model sees besides x_t.

Imagen Video's SR conditioning, as Lumiere's SSR uses it: the low-resolution clip is upsampled
bilinearly to the output size and concatenated on channels to the noisy high-resolution clip.
The conditioning is **noise-augmented** (Ho et al. 2022, "Cascaded Diffusion Models"): during
training it is diffused to a random level ``t_aug`` in ``[aug_min, aug_max]`` with the
forward process of the run's schedule, so the model learns not to copy the artefacts of a base
model's samples; at sampling a fixed level is used.

**Choice** (the paper is silent): the model is told the augmentation level through one extra
constant input channel holding ``t_aug`` (rather than a second noise-level embedding, which
would change the U-Net's signature). The SSR model therefore has
``model.cond_channels = 4``: 3 for the augmented upsampled clip and 1 for ``t_aug``.

During training the low-resolution clip is made on device from the high-resolution batch
(`degrade`: antialiased bilinear down-sampling), so one dataset serves the SSR stage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stunet.diffusion import schedules

COND_CHANNELS = 4  # augmented upsampled clip (3) + augmentation level (1)


def _check_clip(video: jax.Array, name: str) -> None:
  if video.ndim != 5 or video.shape[-1] != 3:
    raise ValueError(f"{name} must be [b, t, h, w, 3], got shape {tuple(video.shape)}")


def resize(video: jax.Array, size: int) -> jax.Array:
  """``[b t h w c] -> [b t size size c]``, bilinear (antialiased when shrinking), float32."""
  b, t, _, _, c = video.shape
  return jax.image.resize(video.astype(jnp.float32), (b, t, size, size, c), "bilinear",
                          antialias=True)


def degrade(video: jax.Array, low_resolution: int) -> jax.Array:
  """The low-resolution clip an SSR model learns to invert: ``[b t low low 3]``."""
  _check_clip(video, "video")
  if low_resolution >= video.shape[2]:
    raise ValueError(f"low_resolution={low_resolution} must be below the clip's "
                     f"{video.shape[2]} px")
  return resize(video, low_resolution)


def augment(rng: jax.Array, upsampled: jax.Array, t_aug: jax.Array,
            diffusion_config) -> jax.Array:
  """``upsampled [b t h w 3]`` diffused to level ``t_aug [b]`` (``t_aug = 0``: unchanged).

  Uses the run's schedule at the conditioning's resolution, so ``t_aug`` means the same amount
  of noise as the model's own noise levels.
  """
  h, w = upsampled.shape[2:4]
  logsnr = schedules.logsnr_fn(diffusion_config, h, w)(t_aug)
  alpha, sigma = schedules.alpha_sigma(logsnr)
  # logsnr_max clips t = 0 to sigma ~ 5e-5; an augmentation level of 0 means none at all.
  alpha = jnp.where(t_aug > 0, alpha, 1.0)
  sigma = jnp.where(t_aug > 0, sigma, 0.0)
  noise = jax.random.normal(rng, upsampled.shape, jnp.float32)
  return (schedules.expand_to(alpha, upsampled) * upsampled
          + schedules.expand_to(sigma, upsampled) * noise)


def condition(rng: jax.Array, low: jax.Array, resolution: int, t_aug: jax.Array,
              diffusion_config) -> jax.Array:
  """SSR conditioning channels ``[b t res res 4]`` for a low-resolution clip ``low`` in [-1, 1].

  Args:
    rng: key of the augmentation noise.
    low: ``[b t h w 3]`` low-resolution clip.
    resolution: the SSR output size.
    t_aug: ``[b]`` (or scalar) augmentation level in [0, 1].
    diffusion_config: the run's ``diffusion`` section (schedule of the augmentation).
  """
  _check_clip(low, "low-resolution clip")
  b = low.shape[0]
  t_aug = jnp.broadcast_to(jnp.asarray(t_aug, jnp.float32), (b,))
  upsampled = augment(rng, resize(low, resolution), t_aug, diffusion_config)
  level = jnp.broadcast_to(schedules.expand_to(t_aug, upsampled), upsampled.shape[:-1] + (1,))
  return jnp.concatenate([upsampled, level], axis=-1)


def check_aug_range(aug_min: float, aug_max: float, field: str) -> None:
  """``0 <= aug_min <= aug_max < 1``, raising `ValueError` naming ``field``."""
  if not 0.0 <= aug_min <= aug_max < 1.0:
    raise ValueError(f"{field}: need 0 <= noise_aug_min <= noise_aug_max < 1, got "
                     f"({aug_min!r}, {aug_max!r})")
