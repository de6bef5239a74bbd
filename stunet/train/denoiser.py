"""One denoiser: a stage's U-Net with its weights, conditioning channels and null text, as the
samplers call it.

The train-time samples (`stunet.train.samples`), the SSR cascade (`stunet.sampling.cascade`) and
the AOT sampling step (`stunet.apps.aot`) all denoise through this object, so the text
encoding, the null text of `config.diffusion.null_text` and the way conditioning channels join
the noisy input are written once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import multidiffusion
from stunet.train import build as build_lib


@dataclasses.dataclass(frozen=True)
class Text:
  """A batch of captions as the sampler takes them: embeddings, mask and the null text."""
  emb: jax.Array  # [b L d] float32
  mask: jax.Array  # [b L] bool
  null_emb: jax.Array  # [L d]
  null_mask: jax.Array  # [L]


@dataclasses.dataclass(frozen=True)
class Denoiser:
  """`setup`'s model as a `guidance.DenoiseFn`; call its methods inside a traced function."""
  setup: build_lib.StageSetup

  def encode(self, text_params: Any, ids: jax.Array, mask: jax.Array) -> Text:
    """Captions `(ids, mask) [b L]` through the stage's text encoder, with the null text."""
    emb = self.setup.text_module.apply({"params": text_params}, ids, mask).astype(jnp.float32)
    null_emb, null_mask = self.setup.null_text(text_params, emb)
    return Text(emb, mask.astype(bool), null_emb, null_mask)

  def fn(self, unet_params: Any, cond: jax.Array | None = None) -> guidance_lib.DenoiseFn:
    """`(x_t, noise_cond, text_emb, text_mask) -> prediction` with the U-Net's `unet_params`.

    `cond [b ...]` (conditioning channels of a conditioned stage) is repeated to the model
    batch (guidance doubles it) and concatenated on channels to every input.
    """
    model = self.setup.model

    def denoise(x_t, noise_cond, text_emb, text_mask):
      if cond is not None:
        x_t = jnp.concatenate(
            [x_t, multidiffusion.repeat_to_batch(cond, x_t.shape[0], "cond").astype(x_t.dtype)],
            axis=-1)
      return model.apply({"params": unet_params}, x_t, noise_cond, text_emb, text_mask,
                         train=False)
    return denoise
