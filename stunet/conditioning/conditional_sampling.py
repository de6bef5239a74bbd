"""Sampling with known pixels: image-to-video, inpainting, outpainting, cinemagraphs (SPEC §5).

The conditional model was fine-tuned on ``concat(noisy, cond * mask, mask)`` (see
`stunet.conditioning.masks`); at sampling the same conditioning rides along with the noisy sample
at every step. No pixels are pasted in: the model itself learned to reproduce the known region,
so what comes out there is a measure of how well it did (compose afterwards with
`composite_known` if exact known pixels are wanted).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stunet.conditioning import masks
from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import multidiffusion
from stunet.diffusion import samplers


def conditioned_denoise_fn(denoise_fn: guidance_lib.DenoiseFn, cond: jax.Array,
                           mask: jax.Array) -> guidance_lib.DenoiseFn:
  """Wraps a 7-channel model so the sampler can call it on the 3-channel noisy sample.

  ``cond [b t h w 3]`` and ``mask [b t h w 1]`` are repeated to the model batch when guidance
  doubles it.
  """
  if mask.shape != cond.shape[:-1] + (1,):
    raise ValueError(f"mask must be [b, t, h, w, 1] matching cond {tuple(cond.shape)}, got "
                     f"{tuple(mask.shape)}")

  def denoise(x, noise_cond, text_emb, text_mask):
    if x.shape[1:] != cond.shape[1:]:
      raise ValueError(f"sample {tuple(x.shape)} and cond {tuple(cond.shape)} must have the "
                       "same [t, h, w, c]")
    c = multidiffusion.repeat_to_batch(cond, x.shape[0], "cond")
    m = multidiffusion.repeat_to_batch(mask, x.shape[0], "mask")
    return denoise_fn(masks.model_input(x, c, m), noise_cond, text_emb, text_mask)

  return denoise


def sample(key: jax.Array, denoise_fn: guidance_lib.DenoiseFn, cond: jax.Array,
           mask: jax.Array, text_emb: jax.Array, text_mask: jax.Array, null_emb: jax.Array,
           null_mask: jax.Array, *, config, **sampler_kwargs) -> jax.Array:
  """Samples ``[b t h w 3]`` clips that agree with ``cond`` where ``mask`` is 1.

  Same options as `stunet.diffusion.samplers.sample` (``steps``, ``sampler``, ``guidance``,
  ...); the output shape is ``cond``'s. ``denoise_fn`` is the 7-channel conditional model.
  """
  if cond.ndim != 5:
    raise ValueError(f"cond must be [b, t, h, w, 3], got shape {tuple(cond.shape)}")
  wrapped = conditioned_denoise_fn(denoise_fn, cond, mask)
  return samplers.sample(key, wrapped, cond.shape, text_emb, text_mask, null_emb, null_mask,
                         config=config, **sampler_kwargs)


def composite_known(video: jax.Array, cond: jax.Array, mask: jax.Array) -> jax.Array:
  """``video`` with the known pixels (``mask = 1``) replaced by ``cond``."""
  return jnp.where(mask > 0.5, cond.astype(video.dtype), video)
