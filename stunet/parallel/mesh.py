"""The device mesh named by `config.mesh` (STYLE: Sharding).

`mesh.shape` gives one size per axis of `mesh.axes` (``data, fsdp, tensor``); one entry may be
-1 for "all remaining devices". Axis types are spelled out as Auto: the default (Explicit)
breaks Linen convolutions with sharded kernels.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
from jax.sharding import AxisType


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """`mesh.shape` with its -1 entry filled so the product is `num_devices`."""
  shape = tuple(int(s) for s in shape)
  fills = [i for i, s in enumerate(shape) if s == -1]
  if len(fills) > 1:
    raise ValueError(f"mesh.shape={shape} may contain at most one -1 (fill) entry")
  if any(s < 1 and s != -1 for s in shape):
    raise ValueError(f"mesh.shape={shape} entries must be positive or -1")
  known = math.prod(s for s in shape if s != -1)
  if fills:
    if num_devices % known:
      raise ValueError(f"mesh.shape={shape}: {num_devices} devices are not divisible by the "
                       f"fixed axes' product {known}")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ValueError(f"mesh.shape={shape} needs {math.prod(shape)} devices, but {num_devices} "
                     "are available")
  return shape


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """Mesh over `devices` (default: all) with `mesh_config.axes` and `mesh_config.shape`."""
  axes = tuple(mesh_config.axes)
  if len(axes) != len(tuple(mesh_config.shape)):
    raise ValueError(f"mesh.shape={tuple(mesh_config.shape)} needs one entry per axis of "
                     f"mesh.axes={axes}")
  if len(set(axes)) != len(axes):
    raise ValueError(f"mesh.axes={axes} has repeated names")
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_shape(mesh_config.shape, len(devices))
  return jax.make_mesh(shape, axes, axis_types=(AxisType.Auto,) * len(axes), devices=devices)
