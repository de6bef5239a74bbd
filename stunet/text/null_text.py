"""The null text a run's classifier-free guidance uses (`config.diffusion.null_text`).

Guidance needs one "no caption" input, used for the dropped captions in training and for the
unconditional half of every guided sampling step; the two must be the same. Two kinds:

- `zeros`: an all-zero embedding valid at position 0 only (`diffusion.guidance.null_text`):
  what our models trained from scratch use.
- `empty_caption`: the text encoder's embedding of the empty caption `""` with its tokenizer's
  mask. Public U-Nets (Stable Diffusion, DeepFloyd IF) were trained with their encoder's
  embedding of the empty prompt, and their pipelines guide with it; zeros are an input such a
  U-Net never saw.

The empty caption's embedding is computed from the text parameters where it is used, inside
the jitted step or sampler: one sequence through the encoder per call, always consistent with
the weights it comes from (a frozen encoder makes it a constant XLA may fold).
`auto` resolves per stage when the stage starts (`stunet.train.loop.resolve_null_text`); a
config in which it is still `auto` (a run saved before the option existed) trained with zeros.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.diffusion import config as diffusion_config
from stunet.diffusion import guidance as guidance_lib

KINDS = diffusion_config.NULL_TEXTS


def empty_caption(tokenizer, text_module: nn.Module, text_params: Any
                  ) -> tuple[jax.Array, jax.Array]:
  """The encoder's embedding of `""` `[L, d]` (float32) and its tokenizer mask `[L]`."""
  ids, mask = tokenizer([""])
  emb = text_module.apply({"params": text_params}, jnp.asarray(ids), jnp.asarray(mask))
  return emb[0].astype(jnp.float32), jnp.asarray(mask[0], jnp.bool_)


def null_text(kind: str, tokenizer, text_module: nn.Module, text_params: Any, length: int,
              width: int) -> tuple[jax.Array, jax.Array]:
  """`(null_emb [L, d], null_mask [L])` of `kind` (see the module doc)."""
  if kind not in KINDS:
    raise ValueError(f"diffusion.null_text must be one of {KINDS}, got {kind!r}")
  if kind == "empty_caption":
    emb, mask = empty_caption(tokenizer, text_module, text_params)
    if emb.shape != (length, width):
      raise ValueError(f"the empty caption's embedding has shape {tuple(emb.shape)}, the "
                       f"captions' [L, d] = {(length, width)}")
    return emb, mask
  return guidance_lib.null_text(length, width)
