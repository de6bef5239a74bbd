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

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import common
from benchmarks import train_setup
from stunet.train import measure

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
_INTERLEAVE = flags.DEFINE_bool(
    "interleave", False, "Compile every case first, then step them round-robin (A/B runs).")
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


class Case:
  """One compiled case with its state and batch, stepped by `step` (round-robin capable)."""

  def __init__(self, case: str, batch: int, dtype: str, remat: str,
               model_overrides: dict | None = None):
    name, frames, resolution, case_overrides = train_setup.parse_case(case)
    config = train_setup.benchmark_config(
        name, frames=frames, resolution=resolution, batch=batch, dtype=dtype or None,
        remat=None if remat == "config" else remat == "on",
        **{**(model_overrides or {}), **case_overrides})
    self.case, self.config, self.frames, self.batch = case, config, frames, batch
    self.bench = train_setup.TrainStepSetup(config)
    self.compiled = self.bench.compile_abstract()
    abstract = self.bench.abstract_state()
    counts = measure.param_counts(abstract.params, self.bench.setup.labels)
    self.params, self.trainable = counts["all"], counts["trainable"]
    self.state = measure.random_like(abstract)
    self.batch_arrays = self.bench.make_batch()
    self.times: list[float] = []

  def step(self):
    self.state, times = self.bench.run_steps(self.state, self.batch_arrays, 1)
    self.times += times

  def result(self) -> StepResult:
    self.state = None  # free the (donated) state
    return StepResult(
        case=self.case, batch=self.batch, frames=self.frames, dtype=str(self.config.model.dtype),
        remat=bool(self.config.model.remat), params=self.params,
        trainable_params=self.trainable, compile_seconds=self.bench.compile_seconds,
        step_seconds=float(np.median(self.times[1:])),
        flops=measure.flops(self.compiled),
        peak_memory=measure.memory(self.compiled).peak_bytes)


def run_cases(cases, batch: int, dtype: str, remat: str, steps: int, interleave: bool,
              model_overrides: dict | None = None) -> list[StepResult]:
  """Times every case: one after the other, or (`interleave`) all compiled first and then
  stepped round-robin, so that load changes on a shared machine hit every case alike."""
  if not interleave:
    results = []
    for case in cases:
      c = Case(case, batch, dtype, remat, model_overrides)
      for _ in range(steps + 1):  # the first step is a warm-up
        c.step()
      results.append(c.result())
      _print(results[-1])
    return results
  prepared = [Case(case, batch, dtype, remat, model_overrides) for case in cases]
  for _ in range(steps + 1):
    for c in prepared:
      c.step()
  results = [c.result() for c in prepared]
  for r in results:
    _print(r)
  return results


def _print(r: StepResult):
  print(f"{r.case}: compile {r.compile_seconds:.1f} s, step {r.step_seconds:.3f} s, "
        f"{common.si(r.flops)} FLOPs, {common.si(r.flops_per_second, 'FLOP/s')}", flush=True)


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
  results = run_cases(cases, _BATCH.value, _DTYPE.value, _REMAT.value, steps,
                      _INTERLEAVE.value, train_setup.QUICK_MODEL if quick else None)
  if table_peak:
    peak, source = table_peak, f"bf16 table peak for {jax.devices()[0].device_kind}"
  else:
    peaks.append(common.measure_matmul_peak(matmul_size))
    peak = max(peaks)
    source = (f"float32 {matmul_size}x{matmul_size} matmul measured in this run, best of "
              f"before/after the cases: {', '.join(common.si(p) for p in peaks)}")
  flags_used = " ".join(f"--{k}={v}" for k, v in (
      ("quick", quick), ("cases", ",".join(cases)), ("batch", _BATCH.value),
      ("dtype", _DTYPE.value), ("remat", _REMAT.value), ("steps", steps),
      ("interleave", _INTERLEAVE.value)))
  report = format_results(results, peak, source, machine,
                          f"python -m benchmarks.train_step {flags_used}")
  print(report)
  common.write_report(report, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
