"""benchmarks/train_step.py --quick: the table is written and its numbers are positive."""

from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows


def test_quick_train_step_report(tmp_path):
  report = run_quick("benchmarks.train_step", tmp_path)
  assert "Machine:" in report and "Peak:" in report
  rows = table_rows(report, "tiny:")
  assert len(rows) == 1
  # compile s, step s, frames/s, FLOPs/step, achieved FLOP/s, MFU, memory
  for cell in rows[0][5:]:
    assert number(cell) > 0, rows[0]
