"""benchmarks/remat_policies.py: policy parsing and a --quick run."""

import pytest

from benchmarks import remat_policies
from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows


def test_split_policies_keeps_per_level_commas():
  assert remat_policies.split_policies("off; full,dots ;") == ["off", "full,dots"]
  with pytest.raises(ValueError, match="empty"):
    remat_policies.split_policies(" ; ")


def test_quick_report_recomputes_under_full_remat(tmp_path):
  report = run_quick("benchmarks.remat_policies", tmp_path, "--policies=full;off,dots")
  rows = {r[0]: r for r in table_rows(report, "`")}
  assert list(rows) == ["`full`", "`off,dots`"]
  flops = {k: number(r[4]) for k, r in rows.items()}
  # Recomputing every unit's whole forward costs more FLOPs than recomputing only level 1's
  # norms and activations.
  assert flops["`full`"] > flops["`off,dots`"]
  assert rows["`full`"][2] == "1.00" and rows["`full`"][5] == "1.00"
