"""Runs a benchmark script's `--quick` mode in a subprocess and returns its markdown report.

A subprocess keeps each script's absl flags and JAX device setup its own (the test session
simulates 8 CPU devices; the benchmarks measure one).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def run_quick(module: str, tmp_path, *extra: str) -> str:
  output = os.path.join(tmp_path, "report.md")
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=FAST_XLA,
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-m", module, "--quick", f"--output={output}", *extra],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(output, encoding="utf-8") as f:
    return f.read()


def table_rows(report: str, first_cell: str) -> list[list[str]]:
  """Cells of the markdown table rows whose first cell starts with `first_cell`."""
  rows = []
  for line in report.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and cells[0].startswith(first_cell):
      rows.append(cells)
  return rows


def number(cell: str) -> float:
  """'1.23 GFLOP/s' / '12.5%' / '3.4 MB' -> the value with its SI prefix applied."""
  match = re.match(r"\s*([-+0-9.eE]+)\s*([kMGTP]?)", cell)
  assert match, f"no number in {cell!r}"
  scale = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}[match.group(2)]
  return float(match.group(1)) * scale
