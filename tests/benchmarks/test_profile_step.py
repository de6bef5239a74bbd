"""benchmarks/profile_step.py: HLO parsing and op classification, and the --quick report."""

from benchmarks import profile_step
from tests.benchmarks.conftest import number
from tests.benchmarks.conftest import run_quick
from tests.benchmarks.conftest import table_rows

_HLO = """
HloModule jit_step, entry_computation_layout={(f32[2,4]{1,0})->f32[2,4]{1,0}}

%fused_computation.1 (param_0.1: f32[2,4], /*index=1*/param_1.2: f32[4]) -> f32[2] {
  %param_0.1 = f32[2,4]{1,0} parameter(0)
  %t.1 = f32[4,2]{1,0} transpose(%param_0.1), dimensions={1,0}
  ROOT %r.1 = f32[2]{0} reduce(%param_0.1, %c), dimensions={1}, to_apply=%add
}

%fused_computation.2 (param_0.2: f32[2,4]) -> f32[4,2] {
  %param_0.2 = f32[2,4]{1,0} parameter(0)
  ROOT %t.2 = f32[4,2]{1,0} transpose(%param_0.2), dimensions={1,0}
}

ENTRY %main (p: f32[2,4]) -> f32[2,4] {
  %p = f32[2,4]{1,0} parameter(0)
  %conv.3 = f32[2,4]{1,0} convolution(%p, %p), dim_labels=b0f_0io->b0f, metadata={op_name="jit(step)/STUNet/down_0/res_1/conv1/conv_general_dilated"}
  %reduce_fusion = f32[2]{0} fusion(%p, %q), kind=kInput, calls=%fused_computation.1, metadata={op_name="jit(step)/STUNet/up_0/temporal_2/conv_block/norm1/reduce_sum"}
  ROOT %transpose_fusion = f32[4,2]{1,0} fusion(%p), kind=kLoop, calls=%fused_computation.2
}
"""


def test_parse_and_classify_hlo():
  by_name, computations = profile_step.parse_hlo(_HLO)
  assert set(computations) == {"fused_computation.1", "fused_computation.2", "main"}
  kinds = {n: profile_step.op_kind(by_name[n], computations)
           for n in ("conv.3", "reduce_fusion", "transpose_fusion")}
  assert kinds == {"conv.3": "convolution",
                   "reduce_fusion": "reduction fusion (norms, softmax, bias grads)",
                   "transpose_fusion": "transpose / copy / layout"}
  assert profile_step.layer_kind(by_name["conv.3"].op_name) == "res block"
  assert profile_step.layer_kind(by_name["reduce_fusion"].op_name) == "temporal conv block"
  assert profile_step.layer_kind(by_name["transpose_fusion"].op_name) == "no metadata"


def test_quick_profile_report(tmp_path):
  report = run_quick("benchmarks.profile_step", tmp_path)
  assert "Machine:" in report and "FLOPs/step" in report
  kinds = {r[0]: r for r in table_rows(report, "") if r[-1].endswith("%")}
  assert "convolution" in kinds and "dot (matmul)" in kinds, kinds
  for row in kinds.values():
    assert number(row[1]) >= 0 and 0 <= number(row[2]) <= 100, row
