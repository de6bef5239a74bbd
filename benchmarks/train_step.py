r"""Speed of the real train step: compile time, step time, frames/s, FLOPs, FLOP/s and MFU.

For each `config:TxHxW` case the video-stage step of `stunet.train.step` (what
`experiments/train.py` runs after the T2I stage: text encoder and spatial weights frozen,
temporal layers trained with AdamW + EMA) is compiled on one device and timed. FLOPs per step
come from XLA's cost analysis of the compiled step; MFU divides the achieved FLOP/s by the
device's peak: on CPU a float32 2048^2 matmul timed in this run (before and after the cases,
the faster kept), on TPU/GPU the dense bf16 peak of the device kind (`common.BF16_PEAK_TFLOPS`).
The state is filled with random values on the host (no compiled initialiser: the step's cost
does not depend on the values).

  python -m benchmarks.train_step                      # tiny, demo and base widths
  python -m benchmarks.train_step --cases=base:16x32x32 --dtype=bfloat16
  python -m benchmarks.train_step --quick              # tiny only, seconds
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import common
from benchmarks import train_setup

DEFAULT_CASES = ("tiny:8x16x16", "tiny:16x32x32", "demo:16x32x32", "demo:16x64x64",
                 "base:16x32x32")
QUICK_CASES = ("tiny:4x8x8",)  # with train_setup.QUICK_MODEL

_CASES = flags.DEFINE_list(
    "cases", list(DEFAULT_CASES), "config:TxHxW cases (H = W); config:TxHxW:field=value sets "
    "string model fields, e.g. demo:16x32x32:temporal_conv_impl=conv for an A/B.")
_BATCH = flags.DEFINE_integer("batch", 1, "Clips per step.")
_DTYPE = flags.DEFINE_string("dtype", "float32",
                             "model.dtype for every case ('' = the config's own; base says "
                             "bfloat16, which CPUs emulate slowly).")
_REMAT = flags.DEFINE_enum("remat", "config", ["config", "on", "off"], "model.remat.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per case (after one warm-up step).")
_QUICK = flags.DEFINE_bool("quick", False, "Two-level tiny model at 4x8x8, 2 steps, small "
                           "matmul: a smoke run.")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/results/train_step.md",
                              "Markdown file for the results ('' = print only).")


@dataclasses.dataclass
class StepResult:
  case: str
  batch: int
  frames: int
  dtype: str
  remat: bool
  params: int
  trainable_params: int
  compile_seconds: float
  step_seconds: float
  flops: float
  peak_memory: int

  @property
  def frames_per_second(self) -> float:
    return self.batch * self.frames / self.step_seconds

  @property
  def flops_per_second(self) -> float:
    return self.flops / self.step_seconds


def run_case(case: str, batch: int, dtype: str, remat: str, steps: int,
             model_overrides: dict | None = None) -> StepResult:
  name, frames, resolution, case_overrides = train_setup.parse_case(case)
  config = train_setup.benchmark_config(
      name, frames=frames, resolution=resolution, batch=batch, dtype=dtype or None,
      remat=None if remat == "config" else remat == "on",
      **{**(model_overrides or {}), **case_overrides})
  bench = train_setup.TrainStepSetup(config)
  compiled = bench.compile_abstract()
  abstract = bench.abstract_state()
  params, trainable = train_setup.count_params(abstract, bench.setup.labels)
  state = train_setup.random_state(abstract)
  batch_arrays = bench.make_batch()
  state, times = bench.run_steps(state, batch_arrays, steps + 1)
  del state
  return StepResult(
      case=case, batch=batch, frames=frames, dtype=str(config.model.dtype),
      remat=bool(config.model.remat), params=params, trainable_params=trainable,
      compile_seconds=bench.compile_seconds, step_seconds=float(np.median(times[1:])),
      flops=common.compiled_flops(compiled), peak_memory=common.compiled_peak_memory(compiled))


def format_results(results: list[StepResult], peak: float, peak_source: str, machine: str,
                   command: str) -> str:
  header = ["case (config:TxHxW)", "batch", "dtype", "remat", "params (trainable)",
            "compile s", "step s (median)", "frames/s", "FLOPs/step (XLA)", "achieved FLOP/s",
            "MFU", "peak memory (XLA)"]
  rows = [[r.case, r.batch, r.dtype, "on" if r.remat else "off",
           f"{common.si(r.params)} ({common.si(r.trainable_params)})",
           f"{r.compile_seconds:.1f}", f"{r.step_seconds:.3f}",
           f"{r.frames_per_second:.2f}", common.si(r.flops), common.si(r.flops_per_second),
           f"{100 * r.flops_per_second / peak:.1f}%", common.si(r.peak_memory, "B")]
          for r in results]
  return "\n".join([
      "# Train step (video stage)", "",
      f"Command: `{command}`", "",
      f"Machine: {machine}", "",
      f"Peak: {common.si(peak, 'FLOP/s')} ({peak_source}).", "",
      common.NOISY_MACHINE_NOTE, "",
      common.markdown_table(header, rows), "",
      "FLOPs/step is XLA's cost analysis of the compiled step (forward, backward through the "
      "frozen spatial layers, temporal weight gradients, AdamW, EMA); it counts elementwise "
      "work as well as convolutions and matmuls.", ""])


def main(argv):
  del argv
  quick = _QUICK.value
  cases = QUICK_CASES if quick else tuple(_CASES.value)
  steps = 2 if quick else _STEPS.value
  matmul_size = 512 if quick else 2048
  machine = common.machine_info()
  print(f"machine: {machine}", flush=True)
  table_peak = common.table_peak_flops()
  peaks = [] if table_peak else [common.measure_matmul_peak(matmul_size)]
  results = []
  for case in cases:
    start = time.perf_counter()
    results.append(run_case(case, _BATCH.value, _DTYPE.value, _REMAT.value, steps,
                            train_setup.QUICK_MODEL if quick else None))
    r = results[-1]
    print(f"{case}: compile {r.compile_seconds:.1f} s, step {r.step_seconds:.3f} s, "
          f"{common.si(r.flops)} FLOPs, {common.si(r.flops_per_second, 'FLOP/s')} "
          f"({time.perf_counter() - start:.0f} s in all)", flush=True)
  if table_peak:
    peak, source = table_peak, f"bf16 table peak for {jax.devices()[0].device_kind}"
  else:
    peaks.append(common.measure_matmul_peak(matmul_size))
    peak = max(peaks)
    source = (f"float32 {matmul_size}x{matmul_size} matmul measured in this run, best of "
              f"before/after the cases: {', '.join(common.si(p) for p in peaks)}")
  flags_used = " ".join(f"--{k}={v}" for k, v in (
      ("quick", quick), ("cases", ",".join(cases)), ("batch", _BATCH.value),
      ("dtype", _DTYPE.value), ("remat", _REMAT.value), ("steps", steps)))
  report = format_results(results, peak, source, machine,
                          f"python -m benchmarks.train_step {flags_used}")
  print(report)
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      f.write(report)


if __name__ == "__main__":
  app.run(main)
