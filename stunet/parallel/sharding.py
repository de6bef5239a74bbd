"""Logical axis names -> `NamedSharding`s through the rules in `config.mesh.rules`.

Modules name their parameter dims (`conv_out`, `embed`, `heads`, ...); the rules map each name
to a mesh axis, a tuple of mesh axes, or None (replicated). Unlike `flax.linen`'s own
conversion, this one looks at shapes: a dim the mapped mesh axes do not divide (e.g. the 3
output channels of `conv_out` over fsdp=4) is replicated instead of failing, and a mesh axis
is used at most once per array.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

Rules = Sequence[tuple[str, Any]]


def rules_dict(rules: Rules) -> dict[str, tuple[str, ...]]:
  """`((logical, mesh_axes), ...)` -> `{logical: (mesh axes...)}` (None -> ())."""
  out = {}
  for entry in rules:
    if len(entry) != 2:
      raise ValueError(f"mesh.rules entries must be (logical_name, mesh_axes), got {entry!r}")
    name, axes = entry
    if axes is None:
      axes = ()
    elif isinstance(axes, str):
      axes = (axes,)
    out.setdefault(name, tuple(axes))  # first match wins, as in flax
  return out


def mesh_spec(logical: Sequence[str | None], shape: Sequence[int], mesh: jax.sharding.Mesh,
              rules: Rules) -> P:
  """PartitionSpec of an array of `shape` whose dims carry the `logical` names."""
  table = rules_dict(rules)
  if len(logical) != len(shape):
    raise ValueError(f"logical axes {tuple(logical)} do not match shape {tuple(shape)}")
  used: set[str] = set()
  out = []
  for name, size in zip(logical, shape):
    axes = tuple(a for a in table.get(name, ()) if a in mesh.axis_names and a not in used)
    # Drop trailing axes until the dim divides; size-1 mesh axes are dropped (they shard
    # nothing and only clutter the spec).
    axes = tuple(a for a in axes if mesh.shape[a] > 1)
    while axes and size % math.prod(mesh.shape[a] for a in axes):
      axes = axes[:-1]
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return P(*out)


def _is_box(x) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def tree_shardings(boxed_abstract: Any, mesh: jax.sharding.Mesh, rules: Rules) -> Any:
  """NamedShardings for the *unboxed* tree of `boxed_abstract` (e.g. from `jax.eval_shape`)."""
  def one(x):
    names = tuple(x.names) if isinstance(x, nn.Partitioned) else (None,) * len(x.shape)
    value = x.value if isinstance(x, nn.Partitioned) else x
    return NamedSharding(mesh, mesh_spec(names, value.shape, mesh, rules))
  return jax.tree.map(one, boxed_abstract, is_leaf=_is_box)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _context_mesh():
  """The mesh of the enclosing `jax.set_mesh` (or legacy `with mesh:`), or None."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is not None and not mesh.empty:
    return mesh
  from flax.linen import spmd  # pylint: disable=g-import-not-at-top
  if spmd.meta.global_mesh_defined():
    return jax.interpreters.pxla.thread_resources.env.physical_mesh
  return None


def constrain_leading(x: jax.Array, logical: Sequence[str]) -> jax.Array:
  """Pins the leading dims of an activation to the mesh axes of their logical names.

  The other dims are left to the partitioner (`P.UNCONSTRAINED`). Layers whose weights are
  FSDP-sharded (over output channels or the input width) call this on their input and output:
  with the batch pinned on both sides, the SPMD partitioner all-gathers the (small) weight. Left
  free, it sometimes keeps the weight sharded and all-gathers the whole batch of activations
  instead, computing channel-sharded outputs on every device (the upsampling convolutions of
  `paper` did, so per-chip memory grew with the FSDP axis). A no-op outside a mesh and
  logical-axis-rules context; dims the mesh axes do not divide stay unconstrained.
  """
  mesh = _context_mesh()
  rules = nn.get_logical_axis_rules()
  if mesh is None or not rules or x.ndim < len(logical):
    return x
  spec = mesh_spec(tuple(logical), x.shape[:len(logical)], mesh, rules)
  if all(s is None for s in spec):
    return x
  full = tuple(s if s is not None else P.UNCONSTRAINED for s in spec)
  full += (P.UNCONSTRAINED,) * (x.ndim - len(full))
  return jax.lax.with_sharding_constraint(x, P(*full))
