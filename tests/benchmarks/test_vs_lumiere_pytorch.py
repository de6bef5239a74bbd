"""benchmarks/vs_lumiere_pytorch.py --quick: both rows and the ratios (skipped without the
PyTorch port, which is a `bench` extra, not a dependency)."""

import importlib.util

import pytest

from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows

pytest.importorskip("torch")
pytest.importorskip("lumiere_pytorch")
if importlib.util.find_spec("denoising_diffusion_pytorch") is None:
  pytest.skip("denoising-diffusion-pytorch is not installed", allow_module_level=True)


def test_quick_vs_lumiere_pytorch_report(tmp_path):
  report = run_quick("benchmarks.vs_lumiere_pytorch", tmp_path)
  ours, theirs = table_rows(report, "stunet"), table_rows(report, "lumiere-pytorch")
  assert len(ours) == len(theirs) == 1
  for row in ours + theirs:
    # params, trainable, matmul+conv FLOPs, step s, achieved FLOP/s
    for cell in (row[2], row[3], row[4], row[6], row[7]):
      assert number(cell) > 0, row
  assert "Ratios (ours / theirs)" in report
