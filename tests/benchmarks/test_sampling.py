"""benchmarks/sampling.py --quick: base and both SSR rows with positive timings."""

from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows


def test_quick_sampling_report(tmp_path):
  report = run_quick("benchmarks.sampling", tmp_path)
  base = table_rows(report, "base")
  multi = table_rows(report, "SSR MultiDiffusion")
  independent = table_rows(report, "SSR independent")
  assert len(base) == len(multi) == len(independent) == 1
  for row in base + multi + independent:
    assert number(row[4]) > 0 and number(row[6]) > 0, row  # s / step, s / clip
  assert number(multi[0][7]) > 0  # the MultiDiffusion / independent time ratio
