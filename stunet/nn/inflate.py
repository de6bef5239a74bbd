"""Inflation: T2I U-Net parameters -> STUNet parameters, and the spatial/temporal labelling.

Lumiere (like Video LDM and AnimateDiff) keeps the pre-trained T2I weights frozen and trains
only the temporal layers added by inflation (SPEC §2). `inflate` copies every T2I tensor into
the same position of a freshly initialised STUNet, and `label_params` marks each leaf
`"spatial"` or `"temporal"` for `optax.multi_transform` (or any other freezing mechanism).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax

SPATIAL = "spatial"
TEMPORAL = "temporal"

Params = Any


def _is_temporal_path(path: tuple[str, ...]) -> bool:
  # Every temporal module in stunet.nn.stunet is named "temporal*" (temporal_0, temporal_down,
  # temporal_up); no spatial module is.
  return any(str(part).startswith("temporal") for part in path)


def _flatten(params: Params) -> dict[tuple[str, ...], Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(params))


def label_params(params: Params) -> Params:
  """Same tree as `params` with `"spatial"` / `"temporal"` string leaves."""
  flat = _flatten(params)
  labels = {k: TEMPORAL if _is_temporal_path(k) else SPATIAL for k in flat}
  return flax.traverse_util.unflatten_dict(labels)


def temporal_mask(params: Params) -> Params:
  """Same tree as `params` with True on temporal leaves (e.g. for `optax.masked`)."""
  return jax.tree.map(lambda label: label == TEMPORAL, label_params(params))


def inflate(t2i_params: Params, stunet_params: Params) -> Params:
  """Copies T2I parameters into the spatial positions of freshly initialised STUNet params.

  Args:
    t2i_params: the `params` collection of a `T2IUNet` (boxed or plain arrays).
    stunet_params: the `params` collection of a freshly initialised `STUNet` with the same
      spatial configuration; its temporal leaves are kept as initialised.

  Returns:
    STUNet params whose spatial leaves are the T2I tensors (the STUNet's boxing/metadata kept).

  Raises:
    ValueError: naming the paths when the two trees' spatial parts do not match (missing,
      unexpected, or differently shaped tensors), so nothing is silently dropped.
  """
  source = {k: nn.unbox(v) for k, v in _flatten(t2i_params).items()}
  target = _flatten(stunet_params)
  spatial_keys = {k for k in target if not _is_temporal_path(k)}
  missing = sorted("/".join(k) for k in spatial_keys - set(source))
  unexpected = sorted("/".join(k) for k in set(source) - spatial_keys)
  if missing or unexpected:
    raise ValueError(
        "T2I parameters do not match the STUNet's spatial parameters (same model.* spatial "
        f"fields needed). Missing in T2I: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
        f"not in STUNet: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
  out = {}
  for key, leaf in target.items():
    if key not in spatial_keys:
      out[key] = leaf
      continue
    value = source[key]
    if value.shape != nn.unbox(leaf).shape:
      raise ValueError(f"Shape mismatch at {'/'.join(key)}: T2I {value.shape} vs STUNet "
                       f"{nn.unbox(leaf).shape}")
    value = value.astype(nn.unbox(leaf).dtype)
    out[key] = leaf.replace_boxed(value) if isinstance(leaf, nn.meta.AxisMetadata) else value
  return flax.traverse_util.unflatten_dict(out)
