"""benchmarks/memory_peak.py: parsing XLA's peak live set, classifying it, and --quick."""

import pytest

from benchmarks import memory_peak
from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick

_LIVE = """HloLiveRange (max 10):
  Live ranges at 7 (peak):
    state_params__unet.2{}: 400 bytes (cumulative: 400 bytes)
    fusion.3{}: 100 bytes (cumulative: 500 bytes)
    transpose_copy_fusion.9{}: 50 bytes (cumulative: 550 bytes)
  Stack trace breakdown for peak usage: 550 bytes
"""

_HLO = """
ENTRY %main (state_params__unet.2: f32[100]) -> f32[25] {
  %state_params__unet.2 = f32[100]{0} parameter(0)
  %fusion.3 = f32[25]{0} fusion(%state_params__unet.2), kind=kLoop, calls=%f, metadata={op_name="jit(step)/transpose(jvp(STUNet))/up_0/jvp(STUNet)/up_0/checkpoint/rematted_computation/res_0/norm1/sub"}
  ROOT %transpose_copy_fusion.9 = f32[25]{0} fusion(%fusion.3), kind=kLoop, calls=%g
}
"""


def test_peak_breakdown_from_dumps():
  values = memory_peak.peak_values(_LIVE)
  assert values == [("state_params__unet.2", 400), ("fusion.3", 100),
                    ("transpose_copy_fusion.9", 50)]
  groups = memory_peak.breakdown(values, memory_peak.op_names(_HLO))
  assert groups == {"train state and batch (arguments)": [400, 1],
                    "recomputed inside remat blocks, up_0": [100, 1],
                    "no metadata: transpose_copy_fusion": [50, 1]}
  with pytest.raises(ValueError, match="peak"):
    memory_peak.peak_values("HloLiveRange (max 1):\n")


def test_classify_forward_and_backward():
  assert memory_peak.classify("x", "jit(f)/jvp(STUNet)/down_1/res_0/conv1/conv") == (
      "forward activations kept for backward, down_1")
  assert memory_peak.classify("y", "jit(f)/transpose(jvp(STUNet))/mid/res_0/add") == (
      "backward cotangents, mid")


def test_quick_memory_peak_report(tmp_path):
  report = run_quick("benchmarks.memory_peak", tmp_path)
  rows = [l.split("|")[1:-1] for l in report.splitlines() if l.startswith("| ")
          and not l.startswith("| class")]
  classes = {r[0].strip(): r for r in rows}
  assert "train state and batch (arguments)" in classes, classes
  assert any(k.startswith("forward activations kept for backward") for k in classes), classes
  shares = [number(r[2]) for r in rows]
  assert 99 <= sum(shares) <= 101, shares
