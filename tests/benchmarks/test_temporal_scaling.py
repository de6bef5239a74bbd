"""benchmarks/temporal_scaling.py --quick: the tables and the plot, positive numbers, and
temporal down-sampling costing fewer FLOPs than temporal factors 1, for the config's STUNet and
for a `--variant` network (a x4 first temporal down-sampling)."""

import os

from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows


def test_quick_temporal_scaling_report(tmp_path):
  plot = os.path.join(tmp_path, "plot.png")
  report = run_quick("benchmarks.temporal_scaling", tmp_path, f"--plot={plot}",
                     "--variant=temporal_factors=(4,)")
  assert os.path.getsize(plot) > 0
  rows = [r for r in table_rows(report, "") if r[0].isdigit()]
  # Two tables: STUNet vs factors 1 and the variant vs its factors-1 network (here the
  # config's: only the factors differ, so no third table against the config's).
  assert [r[0] for r in rows] == ["4", "4"], rows
  for row in rows:
    # At this toy size the train state (which temporal resampling adds to) dominates memory,
    # so only the FLOPs ratio has a sign to check.
    flops_ratio, memory_ratio, temp_ratio = float(row[3]), float(row[6]), float(row[7])
    assert 0 < flops_ratio < 1 and memory_ratio > 0 and temp_ratio > 0, row
    assert all(number(c) > 0 for c in (row[1], row[2], row[4], row[5])), row
  stunet, variant = rows
  # A x4 first temporal down-sampling leaves less work at the coarse level than x2.
  assert number(variant[1]) < number(stunet[1]), (variant, stunet)
  assert variant[2] == stunet[2]  # the same factors-1 network, compiled once
  total = table_rows(report, "total")
  assert len(total) == 1 and 0 < float(total[0][-1]) < 1
