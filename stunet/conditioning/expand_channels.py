"""Adding conditioning input channels to a trained model with zero weights (SPEC §5).

Conditional fine-tuning (image-to-video, inpainting, cinemagraphs) starts from the
unconditional video model with ``model.cond_channels`` extra input channels. Their ``conv_in``
weights start at zero so the new model computes exactly what the old one did, whatever the
conditioning contains; fine-tuning then learns to use them.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp

Params = Any

CONV_IN_KERNEL = ("conv_in", "kernel")


def expand_input_channels(params: Params, new_cond_channels: int, *,
                          in_channels: int = 3) -> Params:
  """Params of an unconditional STUNet/T2I U-Net -> params of the same model with
  ``cond_channels = new_cond_channels``, the new ``conv_in`` input weights zero.

  Args:
    params: the ``params`` collection (boxed or plain) of a model with
      ``model.cond_channels = 0``.
    new_cond_channels: channels to add (4 for masked video + mask).
    in_channels: the model's ``model.in_channels`` (checked against ``conv_in``).

  Returns:
    The same tree with ``conv_in/kernel`` ``[3, 3, in + new, c]``; every other leaf unchanged.
  """
  if not isinstance(new_cond_channels, int) or new_cond_channels < 1:
    raise ValueError(f"new_cond_channels must be a positive integer, got {new_cond_channels!r}")
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  if CONV_IN_KERNEL not in flat:
    raise ValueError("params have no conv_in/kernel: pass the 'params' collection of a STUNet "
                     "or T2I U-Net (not the whole variables dict)")
  leaf = flat[CONV_IN_KERNEL]
  kernel = nn.unbox(leaf)  # kh kw c_in c_out
  if kernel.ndim != 4 or kernel.shape[2] != in_channels:
    raise ValueError(f"conv_in/kernel has shape {tuple(kernel.shape)}; expected "
                     f"[kh, kw, {in_channels}, c] for an unconditional model with "
                     f"in_channels={in_channels}")
  zeros = jnp.zeros(kernel.shape[:2] + (new_cond_channels,) + kernel.shape[3:], kernel.dtype)
  expanded = jnp.concatenate([kernel, zeros], axis=2)
  flat[CONV_IN_KERNEL] = (leaf.replace_boxed(expanded)
                          if isinstance(leaf, nn.meta.AxisMetadata) else expanded)
  return flax.traverse_util.unflatten_dict(flat)
