"""Video-to-video editing with SDEdit (Meng et al. 2022; SPEC §5).

Noise the input clip to level ``strength`` (diffusion time ``t = strength``) and run the
ordinary sampler from there under the new prompt. Small strengths keep the layout and motion of
the input and change textures; strengths near 1 keep little. Lumiere can do this on the whole
clip at once because its base model works at the full frame rate (no keyframes + TSR).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import samplers


def edit_steps(steps: int, strength: float) -> int:
  """Model calls for an edit: ``steps`` is the count for the full [0, 1] range, so the step
  size matches ordinary sampling (at least one call)."""
  return max(1, round(steps * strength))


def sdedit(key: jax.Array, denoise_fn: guidance_lib.DenoiseFn, video: jax.Array,
           strength: float, text_emb: jax.Array, text_mask: jax.Array, null_emb: jax.Array,
           null_mask: jax.Array, *, config, steps: int | None = None,
           **sampler_kwargs) -> jax.Array:
  """Edits ``video [b t h w c]`` (floats in [-1, 1]) towards the prompt in ``text_emb``.

  Args:
    key: PRNG key; the result is a deterministic function of it.
    denoise_fn: the video model, as for `stunet.diffusion.samplers.sample`.
    video: the input clip in [-1, 1].
    strength: noise level ``s`` in [0, 1]; 0 returns the input unchanged, 1 starts from
      (almost) pure noise.
    steps: model calls for a full-range sampling (default ``config.sample_steps``); the edit
      takes `edit_steps(steps, strength)` of them.
    **sampler_kwargs: ``sampler``, ``eta``, ``guidance``, ``thresholding``, ``callback``.

  Returns:
    The edited clip, float32.
  """
  if not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
    raise ValueError(f"SDEdit strength must be a number in [0, 1], got {strength!r}")
  if video.ndim != 5:
    raise ValueError(f"video must be [b, t, h, w, c], got shape {tuple(video.shape)}")
  if not isinstance(video, jax.core.Tracer):
    low, high = float(jnp.min(video)), float(jnp.max(video))
    if low < -1.001 or high > 1.001:
      raise ValueError(f"video values must be in [-1, 1], got [{low:.3g}, {high:.3g}]; map "
                       "uint8 pixels with x / 127.5 - 1")
  for name in ("x_init", "t_start"):
    if name in sampler_kwargs:
      raise ValueError(f"{name} is set by sdedit from video and strength")
  video = video.astype(jnp.float32)
  if strength == 0.0:
    return video  # no noise added, nothing to denoise
  steps = config.sample_steps if steps is None else steps
  return samplers.sample(key, denoise_fn, video.shape, text_emb, text_mask, null_emb,
                         null_mask, config=config, steps=edit_steps(steps, strength),
                         x_init=video, t_start=float(strength), **sampler_kwargs)
