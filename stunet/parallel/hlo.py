"""Reading a compiled step's HLO text: its collectives and their shapes (SPEC §8).

Used to check partitioning from the compiler's own output: which arrays a step all-gathers
(a whole activation gathered onto every chip is what makes per-chip memory grow with the
mesh), and how many bytes each kind of collective moves. Works on the text of
`jax.jit(...).lower(...).compile().as_text()` (after SPMD partitioning, so shapes are per
device) or on a `--xla_dump_to` module.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")

_DTYPES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
           "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPES) + r")\[([\d,]*)\]")
# `%name = <result type> <op>(` ; async collectives appear as `<op>-start` / `<op>-done`.
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+(" + "|".join(COLLECTIVES) +
                    r")(-start)?\(")


@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective instruction of a partitioned HLO module (shapes are per device)."""
  name: str
  kind: str  # one of COLLECTIVES
  dtype: str
  shape: tuple[int, ...]  # the result (for an async start: the largest array it produces)

  @property
  def bytes(self) -> int:
    return math.prod(self.shape) * _DTYPES[self.dtype]


def collectives(hlo_text: str) -> list[Collective]:
  """The collectives of an HLO module's text, with their per-device result shapes."""
  out = []
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    arrays = [(d, tuple(int(s) for s in dims.split(",") if s))
              for d, dims in _ARRAY.findall(m.group(2))]
    if not arrays:
      continue
    # A start op's result is a tuple (operands..., results...): the largest array is the
    # gathered result of an all-gather, and equal-sized for the others.
    dtype, shape = max(arrays, key=lambda a: math.prod(a[1]) * _DTYPES[a[0]])
    out.append(Collective(m.group(1), m.group(3), dtype, shape))
  return out


def bytes_by_kind(hlo_text: str) -> dict[str, int]:
  """Bytes of collective results per kind (a rough traffic measure, per device)."""
  totals = {k: 0 for k in COLLECTIVES}
  for c in collectives(hlo_text):
    totals[c.kind] += c.bytes
  return totals


def gathers_of(hlo_text: str, min_elements: int) -> list[Collective]:
  """All-gathers whose result holds at least `min_elements` elements (largest first)."""
  big = [c for c in collectives(hlo_text)
         if c.kind == "all-gather" and np.prod(c.shape) >= min_elements]
  return sorted(big, key=lambda c: -c.bytes)


def cost_analysis(computation) -> dict:
  """XLA's cost analysis of a lowered or compiled computation, as one dict.

  Some backends return a list (one entry per computation: the first is the step) and some
  report no FLOPs for a lowered computation, which is then compiled for them.
  """
  analysis = computation.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  if "flops" not in (analysis or {}) and hasattr(computation, "compile"):
    return cost_analysis(computation.compile())
  return dict(analysis or {})


def flops(computation) -> float:
  """FLOPs of one call of a lowered or compiled computation (XLA's cost analysis)."""
  analysis = cost_analysis(computation)
  if "flops" not in analysis:
    raise RuntimeError("XLA's cost analysis reported no 'flops' for this backend")
  return float(analysis["flops"])
