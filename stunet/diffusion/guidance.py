"""Classifier-free guidance: text dropout in training, guided prediction at sampling (SPEC §3).

Ho & Salimans (2022): train one model both with and without its text by replacing the caption
with a "null" text for a fraction ``cond_drop`` of the examples; at sampling combine
``pred_uncond + w * (pred_cond - pred_uncond)``. ``w = 1`` is the plain conditional model,
``w = 0`` the unconditional one, ``w > 1`` trades diversity for prompt adherence.

The null text. Our default is an all-zero embedding whose mask marks **only the first
position** as valid. An all-False mask would leave every cross-attention softmax with no key
to normalise over (NaN, or a uniform average over padding, depending on the implementation);
with one valid all-zero key the attention is well defined, identical for every null example,
and carries no information about any caption. A learned null embedding (a model parameter)
can be passed instead through ``null_emb``/``null_mask``; a run chooses between these zeros and
its text encoder's embedding of the empty caption (what public SD / IF U-Nets were trained
with) through ``diffusion.null_text`` (``stunet/text/null_text.py``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# (x_t, noise_cond [b], text_emb [b L d], text_mask [b L]) -> prediction shaped like x_t.
DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def null_text(length: int, width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """Zero null embedding ``[L, d]`` with mask ``[L]`` valid at position 0 only (see above)."""
  if length < 1 or width < 1:
    raise ValueError(f"null text needs length >= 1 and width >= 1, got {length}, {width}")
  emb = jnp.zeros((length, width), dtype)
  mask = jnp.zeros((length,), jnp.bool_).at[0].set(True)
  return emb, mask


def _broadcast_null(null_emb: jax.Array, null_mask: jax.Array, emb: jax.Array,
                    mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Null text ``[L d]``/``[L]`` (or already batched) broadcast to ``emb``/``mask``."""
  if null_emb.shape[-2:] != emb.shape[-2:]:
    raise ValueError(
        f"null_emb shape {tuple(null_emb.shape)} does not match text_emb [b, L, d] = "
        f"{tuple(emb.shape)} in its last two dims")
  if null_mask.shape[-1:] != mask.shape[-1:]:
    raise ValueError(
        f"null_mask shape {tuple(null_mask.shape)} does not match text_mask [b, L] = "
        f"{tuple(mask.shape)}")
  return (jnp.broadcast_to(null_emb, emb.shape).astype(emb.dtype),
          jnp.broadcast_to(null_mask, mask.shape).astype(mask.dtype))


def drop_text(rng: jax.Array, emb: jax.Array, mask: jax.Array, p: float, null_emb: jax.Array,
              null_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Replace each example's text by the null text with probability ``p``.

  Returns ``(emb [b L d], mask [b L], dropped bool [b])``.
  """
  if isinstance(p, (int, float)) and not 0.0 <= p <= 1.0:
    raise ValueError(f"diffusion.cond_drop must be in [0, 1], got {p}")
  null_emb, null_mask = _broadcast_null(null_emb, null_mask, emb, mask)
  dropped = jax.random.bernoulli(rng, p, (emb.shape[0],))  # b
  emb = jnp.where(dropped[:, None, None], null_emb, emb)
  mask = jnp.where(dropped[:, None], null_mask, mask)
  return emb, mask, dropped


def _is_static(w, value: float) -> bool:
  return isinstance(w, (int, float, np.number)) and float(w) == value


def interleave(a: jax.Array, b: jax.Array) -> jax.Array:
  """``[n ...]``, ``[n ...]`` -> ``[2n ...]`` as ``a0 b0 a1 b1 ...``: the guidance-doubled batch.

  Each example's conditional and null-text rows sit next to each other, so a batch sharded
  over devices stays where it is: device d's clips become device d's rows of the doubled batch
  (a reshape of the sharded dim), where concatenating ``[a; b]`` would move every clip of the
  first half of the devices to the second (the partitioner all-gathers ``x_t`` for it). Per-
  example inputs of a doubled batch follow the same order (`multidiffusion.repeat_to_batch`).
  """
  return jnp.stack([a, b], axis=1).reshape((2 * a.shape[0],) + a.shape[1:])


def guided_prediction(denoise_fn: DenoiseFn, x_t: jax.Array, noise_cond: jax.Array,
                      text_emb: jax.Array, text_mask: jax.Array, null_emb: jax.Array,
                      null_mask: jax.Array, guidance) -> jax.Array:
  """``pred_u + w (pred_c - pred_u)`` from one model call on the doubled batch (`interleave`).

  The combination is applied to the raw model output. For v and eps it is the same as guiding
  eps (or x0): the conversions are affine in the prediction with coefficients that depend only
  on ``x_t`` and the noise level, and an affine map commutes with a combination whose weights
  sum to one. A Python ``guidance`` of exactly 1 or 0 skips the unneeded half of the batch.
  """
  null_emb, null_mask = _broadcast_null(null_emb, null_mask, text_emb, text_mask)
  if _is_static(guidance, 1.0):
    return denoise_fn(x_t, noise_cond, text_emb, text_mask)
  if _is_static(guidance, 0.0):
    return denoise_fn(x_t, noise_cond, null_emb, null_mask)
  b = x_t.shape[0]
  both = denoise_fn(interleave(x_t, x_t), interleave(noise_cond, noise_cond),
                    interleave(text_emb, null_emb), interleave(text_mask, null_mask))
  both = both.reshape((b, 2) + both.shape[1:])
  cond, uncond = both[:, 0], both[:, 1]
  guidance = jnp.asarray(guidance, both.dtype)
  return uncond + guidance * (cond - uncond)
