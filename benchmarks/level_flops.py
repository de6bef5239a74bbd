"""Forward FLOPs of a U-Net broken down by module path, counted from its jaxpr.

XLA's cost analysis gives one number per computation. To see *where* the FLOPs are (which
resolution level, spatial or temporal layers), this walks the jaxpr of one forward pass,
including nested jaxprs (remat, custom_jvp, pjit), and charges every `dot_general` and
`conv_general_dilated` (2 FLOPs per multiply-add) to the Flax module path in its name stack.
Elementwise work (norms, activations) is left out, so totals are a little below XLA's.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Callable

import jax
from jax.extend import core as jax_core


def _dot_flops(eqn) -> float:
  lhs = eqn.invars[0].aval
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  contracted = math.prod(lhs.shape[d] for d in lhs_contract)
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * contracted


def _conv_flops(eqn) -> float:
  rhs = eqn.invars[1].aval
  out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
  per_output = math.prod(rhs.shape) // rhs.shape[out_feature_dim]  # in/group * kernel taps
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output


_COUNTERS = {"dot_general": _dot_flops, "conv_general_dilated": _conv_flops}


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if isinstance(v, jax_core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax_core.Jaxpr):
        yield v


def _walk(jaxpr, prefix: str, totals: dict[str, float]):
  for eqn in jaxpr.eqns:
    stack = str(eqn.source_info.name_stack)
    path = "/".join(p for p in (prefix, stack) if p)
    counter = _COUNTERS.get(eqn.primitive.name)
    if counter is not None:
      totals[path] += counter(eqn)
    for sub in _sub_jaxprs(eqn):
      _walk(sub, path, totals)


def flops_by_path(fn: Callable[..., Any], *args) -> dict[str, float]:
  """`{name stack path: matmul + conv FLOPs}` of `fn(*args)` (abstract args are fine)."""
  totals: dict[str, float] = collections.defaultdict(float)
  _walk(jax.make_jaxpr(fn)(*args).jaxpr, "", totals)
  return dict(totals)


def group_flops(by_path: dict[str, float], key: Callable[[str], str | None]
                ) -> dict[str, float]:
  """Sums `by_path` by `key(path)`; paths whose key is None are dropped."""
  out: dict[str, float] = collections.defaultdict(float)
  for path, flops in by_path.items():
    k = key(path)
    if k is not None:
      out[k] += flops
  return dict(out)
