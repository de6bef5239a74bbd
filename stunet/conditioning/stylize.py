"""Stylized generation: blend a style-tuned T2I model's spatial weights into the STUNet (SPEC §5).

Lumiere fine-tunes the T2I model on one style image (StyleDrop) and then uses
``W = a * W_style + (1 - a) * W_orig`` for the spatial weights, ``a`` in [0.5, 1], with the
temporal weights untouched: the temporal layers were trained against the original spatial
features, and plugging in the style weights alone (``a = 1``) gave static or distorted video.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax.numpy as jnp

from stunet.nn import inflate

Params = Any


def _flatten(params: Params) -> dict[tuple[str, ...], Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(params))


def _names(keys) -> str:
  keys = sorted("/".join(map(str, k)) for k in keys)
  return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")


def interpolate_spatial(base_params: Params, style_params: Params, alpha: float) -> Params:
  """STUNet params with spatial leaves ``alpha * style + (1 - alpha) * base``.

  Args:
    base_params: the video model's ``params`` collection (STUNet; boxed or plain).
    style_params: the style-tuned T2I ``params`` (or a STUNet tree, whose temporal leaves are
      ignored); must hold every spatial leaf of ``base_params`` with the same shape.
    alpha: style weight in [0, 1]; 0 gives ``base_params`` and 1 the style's spatial weights,
      bit for bit.

  Returns:
    A tree shaped like ``base_params`` (boxing kept), leaves in the base dtypes; temporal
    leaves are the base leaves themselves.
  """
  if not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
    raise ValueError(f"style alpha must be a number in [0, 1], got {alpha!r}")
  base = _flatten(base_params)
  labels = _flatten(inflate.label_params(base_params))
  style_labels = _flatten(inflate.label_params(style_params))
  style = {k: v for k, v in _flatten(style_params).items()
           if style_labels[k] == inflate.SPATIAL}
  spatial = {k for k, label in labels.items() if label == inflate.SPATIAL}
  missing, unexpected = spatial - set(style), set(style) - spatial
  if missing or unexpected:
    raise ValueError("style parameters do not match the base model's spatial parameters. "
                     f"Missing in style: [{_names(missing)}]; not in base: "
                     f"[{_names(unexpected)}]")
  mismatched = [k for k in spatial if nn.unbox(style[k]).shape != nn.unbox(base[k]).shape]
  if mismatched:
    k = sorted(mismatched)[0]
    raise ValueError(f"shape mismatch at {'/'.join(map(str, k))}: base "
                     f"{nn.unbox(base[k]).shape} vs style {nn.unbox(style[k]).shape} "
                     f"({len(mismatched)} mismatched leaves: {_names(mismatched)})")
  out = {}
  for key, leaf in base.items():
    if key not in spatial:
      out[key] = leaf
      continue
    w_base = nn.unbox(leaf)
    w_style = jnp.asarray(nn.unbox(style[key])).astype(w_base.dtype)
    # The end points are taken as they are: the blend formula would turn -0.0 into +0.0 and
    # 0 * inf into NaN, and "a = 0 is the base model" should hold bit for bit.
    if alpha == 0.0:
      value = w_base
    elif alpha == 1.0:
      value = w_style
    else:
      value = (alpha * w_style + (1.0 - alpha) * w_base).astype(w_base.dtype)
    out[key] = leaf.replace_boxed(value) if isinstance(leaf, nn.meta.AxisMetadata) else value
  return flax.traverse_util.unflatten_dict(out)
