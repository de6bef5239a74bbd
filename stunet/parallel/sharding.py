"""Logical axis names -> `NamedSharding`s through the rules in `config.mesh.rules`.

Modules name their parameter dims (`conv_out`, `embed`, `heads`, ...); the rules map each name
to a mesh axis, a tuple of mesh axes, or None (replicated). Unlike `flax.linen`'s own
conversion, this one looks at shapes: a dim the mapped mesh axes do not divide (e.g. the 3
output channels of `conv_out` over fsdp=4) is replicated instead of failing, and a mesh axis
is used at most once per array.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

Rules = Sequence[tuple[str, Any]]


def as_rules(config_rules: Any) -> tuple[tuple[str, Any], ...]:
  """`config.mesh.rules` (lists after a JSON round trip) as the hashable tuple of pairs that
  `jax.jit` closures and Flax's logical-axis context take; raises naming a malformed entry."""
  rules = tuple(tuple(r) if isinstance(r, (list, tuple)) else r for r in config_rules)
  rules_dict(rules)  # validates every entry
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in rules)


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


def rules_for_mesh(rules: Rules, mesh: jax.sharding.Mesh) -> tuple[tuple[str, Any], ...]:
  """`rules` without the mesh axes `mesh` lacks, for code that converts names itself (Flax
  constrains boxed parameters as it unboxes them and fails on an axis the mesh does not have,
  e.g. the default rules' `context` on a mesh without frame parallelism)."""
  out = []
  for name, axes in rules_dict(rules).items():
    kept = tuple(a for a in axes if a in mesh.axis_names)
    out.append((name, None if not kept else kept[0] if len(kept) == 1 else kept))
  return tuple(out)


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


def context_mesh():
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
  mesh = context_mesh()
  rules = nn.get_logical_axis_rules()
  if mesh is None or not rules or x.ndim < len(logical):
    return x
  spec = mesh_spec(tuple(logical), x.shape[:len(logical)], mesh, rules)
  if all(s is None for s in spec):
    return x
  full = tuple(s if s is not None else P.UNCONSTRAINED for s in spec)
  full += (P.UNCONSTRAINED,) * (x.ndim - len(full))
  return jax.lax.with_sharding_constraint(x, P(*full))


def constrain(x: jax.Array, logical: Sequence[str]) -> jax.Array:
  """`nn.with_logical_constraint` through `mesh_spec`: every dim of `x` pinned to the mesh
  axes of its logical name (replicated where there are none, or where they do not divide it).
  A no-op outside a mesh and logical-axis-rules context."""
  mesh = context_mesh()
  rules = nn.get_logical_axis_rules()
  if mesh is None or not rules:
    return x
  return jax.lax.with_sharding_constraint(x, mesh_spec(tuple(logical), x.shape, mesh, rules))


def dim_is_sharded(shape: Sequence[int], logical: Sequence[str], dim: int) -> bool:
  """Whether dim `dim` of an activation whose leading dims carry the `logical` names is split
  over a mesh axis of the enclosing mesh and rules (False outside a mesh context).

  Layers use it to keep a sharded dim out of reshapes: the SPMD partitioner can merge two
  dims in one local reshape only when the minor one is unsharded, so folding a video's
  context-sharded frames into its batch would all-gather the frames first.
  """
  mesh = context_mesh()
  rules = nn.get_logical_axis_rules()
  if mesh is None or not rules or len(shape) < len(logical):
    return False
  return mesh_spec(tuple(logical), tuple(shape[:len(logical)]), mesh, rules)[dim] is not None


# Mesh axes that shard parameters (the rules map parameter names only onto these).
PARAMETER_AXES = ("fsdp", "context", "tensor")


@dataclasses.dataclass(frozen=True)
class ShardingReport:
  """How well a parameter tree is spread over the parameter-sharding mesh axes.

  Attributes:
    total: parameters in the tree.
    per_device: parameters one device holds.
    ways: product of the sizes of the mesh's parameter-sharding axes (`PARAMETER_AXES`): a
      perfectly sharded tree puts `total / ways` on each device.
    excess: `per_device / (total / ways) - 1`, the extra memory over perfect sharding
      (0 when perfectly sharded, `ways - 1` when fully replicated).
    largest_replicated: `(path, parameters)` of the largest leaves no parameter axis shards.
  """
  total: int
  per_device: int
  ways: int
  excess: float
  largest_replicated: tuple[tuple[str, int], ...]

  def describe(self) -> str:
    leaves = ", ".join(f"{p} ({n:,})" for p, n in self.largest_replicated) or "none"
    return (f"each device holds {self.per_device:,} of {self.total:,} parameters, "
            f"{self.excess:.0%} more than perfect sharding over {self.ways} ways "
            f"(mesh axes {PARAMETER_AXES}); largest unsharded leaves: {leaves}")


def sharding_report(params: Any, shardings: Any, mesh: jax.sharding.Mesh,
                    top: int = 5) -> ShardingReport:
  """Compares the parameters one device holds with perfect sharding (see `ShardingReport`).

  `params` holds arrays or `ShapeDtypeStruct`s, `shardings` the matching `NamedSharding`s.
  maxtext's `assert_params_sufficiently_sharded` checks the same quantity.
  """
  ways = math.prod(mesh.shape[a] for a in PARAMETER_AXES if a in mesh.axis_names)
  param_axes = {a for a in PARAMETER_AXES if a in mesh.axis_names and mesh.shape[a] > 1}
  total = per_device = 0
  replicated = []
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  flat_shardings = jax.tree.leaves(shardings)
  for (path, leaf), sharding in zip(flat, flat_shardings):
    size = math.prod(leaf.shape)
    total += size
    per_device += math.prod(sharding.shard_shape(tuple(leaf.shape)))
    used = {a for entry in sharding.spec if entry is not None
            for a in ((entry,) if isinstance(entry, str) else entry)}
    if param_axes and not used & param_axes:
      replicated.append((jax.tree_util.keystr(path), size))
  replicated.sort(key=lambda item: -item[1])
  excess = per_device / (total / ways) - 1.0 if total else 0.0
  return ShardingReport(total, per_device, ways, excess, tuple(replicated[:top]))


def check_sufficiently_sharded(params: Any, shardings: Any, mesh: jax.sharding.Mesh,
                               tolerance: float) -> ShardingReport:
  """Raises a `ValueError` when one device holds more than `1 + tolerance` times its share of
  the parameters under perfect sharding (the rules replicate dims the mesh does not divide,
  silently, so a bad mesh shape shows up only here); returns the report otherwise."""
  report = sharding_report(params, shardings, mesh)
  if report.excess > tolerance:
    raise ValueError(
        f"the parameters are not sufficiently sharded: {report.describe()}. Choose mesh "
        f"sizes that divide the model's widths (model.channels, heads), change config.mesh.rules, "
        f"or raise config.mesh.max_param_excess (now {tolerance}).")
  return report
