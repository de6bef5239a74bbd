"""The device mesh named by `config.mesh` (STYLE: Sharding).

`mesh.shape` gives one size per axis of `mesh.axes` (``data, fsdp, tensor``; add ``context``
to split each clip's frames); one entry may be -1 for "all remaining devices". Axis types are spelled out as Auto: the default (Explicit)
breaks Linen convolutions with sharded kernels.

Multi-slice (several TPU slices joined over the data-centre network, DCN): `mesh.dcn_shape`
says how many slices each axis spans (default: all of them along the first axis), and the
mesh is built as maxtext does, with `mesh_utils.create_hybrid_device_mesh`: each axis is
`dcn_shape[i]` slices x `shape[i] / dcn_shape[i]` devices over the fast in-slice network
(ICI), so only the collectives of the DCN axes leave a slice.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
from jax.sharding import AxisType


def resolve_axes(axes) -> tuple[str, ...]:
  """`mesh.axes` as a tuple of names. A command line's `--config.mesh.axes='(data,fsdp,
  context,tensor)'` reaches the config as one string (the names are not Python literals), so a
  comma-separated string, bare or in parentheses, is split into its names."""
  if isinstance(axes, str):
    axes = (axes,)
  names = []
  for entry in axes:
    names += [n.strip().strip("'\"") for n in str(entry).strip("()[] ").split(",")]
  names = [n for n in names if n]
  if not names or any(not n.isidentifier() for n in names):
    raise ValueError(f"mesh.axes={tuple(axes)!r} must be mesh axis names, e.g. "
                     "'(data,fsdp,context,tensor)'")
  return tuple(names)


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


def resolve_dcn_shape(dcn_shape: Sequence[int], shape: Sequence[int],
                      num_slices: int) -> tuple[int, ...]:
  """`mesh.dcn_shape` checked against the mesh shape and slice count (() = slices on axis 0)."""
  shape = tuple(shape)
  dcn = tuple(dcn_shape) or (num_slices,) + (1,) * (len(shape) - 1)
  if len(dcn) != len(shape):
    raise ValueError(f"mesh.dcn_shape={dcn} needs one entry per axis of the mesh "
                     f"(mesh.shape={shape})")
  if any(not isinstance(d, int) or d < 1 for d in dcn):
    raise ValueError(f"mesh.dcn_shape={dcn} entries must be positive integers")
  if math.prod(dcn) != num_slices:
    raise ValueError(f"mesh.dcn_shape={dcn} spans {math.prod(dcn)} slices, but the devices "
                     f"come from {num_slices}")
  for i, (size, slices) in enumerate(zip(shape, dcn)):
    if size % slices:
      raise ValueError(f"mesh.dcn_shape={dcn}: axis {i} has {size} devices (mesh.shape="
                       f"{shape}), not divisible by its {slices} slices")
  return dcn


def num_slices_of(devices: Sequence[jax.Device]) -> int:
  """Distinct `slice_index`es of the devices (1 for devices that have none, e.g. CPU)."""
  return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """Mesh over `devices` (default: all) with `mesh_config.axes` and `mesh_config.shape`.

  Devices from several slices give a hybrid (ICI x DCN) mesh laid out by `mesh.dcn_shape`.
  """
  axes = resolve_axes(mesh_config.axes)
  if len(axes) != len(tuple(mesh_config.shape)):
    raise ValueError(f"mesh.shape={tuple(mesh_config.shape)} needs one entry per axis of "
                     f"mesh.axes={axes}")
  if len(set(axes)) != len(axes):
    raise ValueError(f"mesh.axes={axes} has repeated names")
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_shape(mesh_config.shape, len(devices))
  axis_types = (AxisType.Auto,) * len(axes)
  num_slices = num_slices_of(devices)
  dcn_shape = tuple(mesh_config.get("dcn_shape", ()))
  if num_slices == 1:
    if dcn_shape and math.prod(dcn_shape) != 1:
      raise ValueError(f"mesh.dcn_shape={dcn_shape} spans {math.prod(dcn_shape)} slices, but "
                       "the devices come from one slice")
    if not mesh_config.get("allow_split_physical_axes", False):
      try:
        return jax.make_mesh(shape, axes, axis_types=axis_types, devices=devices)
      except (ValueError, NotImplementedError) as e:
        if "allow_split_physical_axes" not in str(e):
          raise
        raise ValueError(
            f"mesh.shape={shape} over axes {axes} does not map onto the slice's physical "
            "torus: each axis size must be a product of some of its dims. Choose such sizes, "
            "or set --config.mesh.allow_split_physical_axes=True to let an axis take part of a "
            f"physical dim (its collectives then use part of a ring). JAX: {e}") from None
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    return jax.sharding.Mesh(grid, axes, axis_types=axis_types)
  from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
  dcn = resolve_dcn_shape(dcn_shape, shape, num_slices)
  ici = tuple(size // slices for size, slices in zip(shape, dcn))
  grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices,
                                              allow_split_physical_axes=True)
  return jax.sharding.Mesh(grid, axes, axis_types=axis_types)
