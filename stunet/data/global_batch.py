"""Per-host batches -> global jax arrays sharded over the mesh's data-parallel axes.

Every process loads ``global_batch / process_count`` examples; `jax.make_array_from_process_local_data`
stitches them into one global array whose batch dimension is split over the batch axes of the
mesh (``data`` and ``fsdp`` by default), which is what the jitted train step expects.
Host-side fields (captions, record indices) stay numpy.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np

# Keys that become device arrays; everything else stays on the host.
DEVICE_KEYS = ("video", "image", "text_ids", "text_mask")


def batch_axes_in_mesh(mesh: jax.sharding.Mesh, batch_axes: Sequence[str]) -> tuple[str, ...]:
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  if not axes:
    raise ValueError(f"none of data.batch_axes={tuple(batch_axes)} is a mesh axis "
                     f"(mesh axes: {mesh.axis_names})")
  return axes


def data_parallel_size(mesh: jax.sharding.Mesh, batch_axes: Sequence[str]) -> int:
  return math.prod(mesh.shape[a] for a in batch_axes_in_mesh(mesh, batch_axes))


def batch_sharding(mesh: jax.sharding.Mesh,
                   batch_axes: Sequence[str]) -> jax.sharding.NamedSharding:
  axes = batch_axes_in_mesh(mesh, batch_axes)
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes))


def check_batch_size(global_batch_size: int, process_count: int,
                     mesh: jax.sharding.Mesh | None, batch_axes: Sequence[str]) -> int:
  """Validates the global batch size and returns the per-process batch size."""
  if global_batch_size <= 0:
    raise ValueError(f"data.global_batch_size must be positive, got {global_batch_size}")
  if global_batch_size % process_count:
    raise ValueError(f"data.global_batch_size={global_batch_size} is not divisible by the "
                     f"process count {process_count}")
  if mesh is not None:
    dp = data_parallel_size(mesh, batch_axes)
    if global_batch_size % dp:
      raise ValueError(
          f"data.global_batch_size={global_batch_size} is not divisible by the data-parallel "
          f"size {dp} (mesh axes {batch_axes_in_mesh(mesh, batch_axes)} of {dict(mesh.shape)})")
  return global_batch_size // process_count


def check_rows_per_process(mesh: jax.sharding.Mesh, batch_axes: Sequence[str],
                           process_of=lambda d: d.process_index) -> None:
  """Every row block of the batch must be held by the devices of one process.

  Each process reads its own examples (`to_global`). Mesh axes the batch is not split over
  (`context`, `tensor`) hold copies of the same rows; spanning two processes, they would be
  handed different examples as the same rows, and the copies would silently disagree.
  """
  sharding = batch_sharding(mesh, batch_axes)
  dp = data_parallel_size(mesh, batch_axes)
  owners: dict[int, set] = {}
  for device, index in sharding.devices_indices_map((dp,)).items():
    owners.setdefault(index[0].start or 0, set()).add(process_of(device))
  shared = {row: procs for row, procs in owners.items() if len(procs) > 1}
  if shared:
    row, procs = min(shared.items())
    others = [a for a in mesh.axis_names if a not in batch_axes_in_mesh(mesh, batch_axes)
              and mesh.shape[a] > 1]
    raise ValueError(
        f"batch row block {row} is held by devices of processes {sorted(procs)}: the mesh "
        f"axes {others} (not in data.batch_axes) span processes, which read different "
        f"examples. Keep those axes within a host (their size at most the devices per "
        f"process, {len(jax.local_devices())} here) or list them in data.batch_axes.")


def to_global(batch: Mapping[str, np.ndarray], sharding: jax.sharding.NamedSharding,
              process_count: int) -> dict:
  """Turns the device keys of a per-process batch into global arrays."""
  out = dict(batch)
  for key in DEVICE_KEYS:
    if key in out:
      local = out[key]
      global_shape = (local.shape[0] * process_count,) + local.shape[1:]
      out[key] = jax.make_array_from_process_local_data(sharding, local, global_shape)
  return out
