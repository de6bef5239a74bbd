"""benchmarks/accelerator.py --quick: every section of the report, on CPU."""

from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows


def test_quick_accelerator_report(tmp_path):
  report = run_quick("benchmarks.accelerator", tmp_path)
  train = table_rows(report, "tiny")
  # The train row (14 cells) and the sampling row (7 cells); on CPU no fused kernel, one row.
  step = [r for r in train if len(r) == 14]
  sample = [r for r in train if len(r) == 7]
  assert len(step) == 1 and len(sample) == 1, report
  assert number(step[0][8]) > 0  # step seconds
  assert number(step[0][9]) > 0 and step[0][11].endswith("%")  # FLOPs and MFU
  assert number(sample[0][6]) > 0  # seconds per clip
  (xla,) = table_rows(report, "xla")
  assert xla[3] == "reference"
