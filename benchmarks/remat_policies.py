r"""Remat policies side by side: the train step's memory, FLOPs and time under each.

For one `config:TxHxW` case the video-stage train step is compiled once per
`model.remat_policy` (`stunet.nn.config.REMAT_POLICIES`: one name for every level, or one per
level comma-separated) with `model.remat` on. Reported per policy: XLA's memory analysis
(temporaries, and the peak of arguments + outputs + temporaries), XLA's FLOPs per step (what
recomputation adds), and with `--steps` > 0 the measured step time. Policies are separated by
';' on the command line because a per-level policy has commas.

  python -m benchmarks.remat_policies --case=base:16x32x32
  python -m benchmarks.remat_policies --case=base:16x32x32 --policies='full;off;full,full,dots,dots,dots'
  python -m benchmarks.remat_policies --quick            # two-level tiny model, a smoke run

XLA:CPU's concurrency-optimised scheduler is off, as in `benchmarks.memory_peak` (it schedules
recomputation early and defeats remat). CPU memory is what XLA:CPU's scheduler makes of the
policy: the same recomputation, not TPU's buffer assignment; `experiments/aot_check.py
--config.model.remat_policy=...` gives the TPU's own numbers.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS

DEFAULT_POLICIES = "off;full;dots;dots_no_batch"


def define_flags() -> None:
  """The command-line flags, defined only when run as a script (the tests import this module
  beside other benchmarks that define flags of the same names)."""
  flags.DEFINE_string("case", "base:16x32x32", "config:TxHxW to compile.")
  flags.DEFINE_string("policies", DEFAULT_POLICIES,
                      "';'-separated model.remat_policy values (each one name or one per "
                      "level, comma-separated).")
  flags.DEFINE_string("dtype", "float32", "model.dtype ('' = the config's own).")
  flags.DEFINE_integer("batch", 1, "Clips per step.")
  flags.DEFINE_integer("steps", 0, "Timed steps per policy after a warm-up (0 = compile only).")
  flags.DEFINE_bool("quick", False, "Two-level tiny model at 4x8x8: a smoke run.")
  flags.DEFINE_string("output", "benchmarks/results/remat_policies.md",
                      "Markdown results ('' = print only).")


def split_policies(text: str) -> list[str]:
  """'off;full,full,dots' -> ['off', 'full,full,dots'] (blank entries dropped)."""
  out = [p.strip() for p in text.split(";") if p.strip()]
  if not out:
    raise ValueError("--policies is empty")
  return out


def main(argv):
  del argv
  if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
  # Imported after XLA_FLAGS is set: JAX reads it when its CPU backend starts.
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from benchmarks import train_setup  # pylint: disable=g-import-not-at-top
  from stunet.train import measure  # pylint: disable=g-import-not-at-top

  quick = FLAGS.quick
  case = "tiny:4x8x8" if quick else FLAGS.case
  name, frames, resolution, overrides = train_setup.parse_case(case)
  if quick:
    overrides = dict(train_setup.QUICK_MODEL, **overrides)
  rows, baseline = [], None
  for policy in split_policies(FLAGS.policies):
    config = train_setup.benchmark_config(
        name, frames=frames, resolution=resolution, batch=FLAGS.batch,
        dtype=FLAGS.dtype or None, remat=True, remat_policy=policy, **overrides)
    bench = train_setup.TrainStepSetup(config)
    compiled = bench.compile_abstract()
    memory = measure.memory(compiled)
    flops = measure.flops(compiled)
    step = float("nan")
    if FLAGS.steps > 0:
      state = measure.random_like(bench.abstract_state())
      batch = bench.make_batch()
      state, _ = bench.run_steps(state, batch, 1)
      _, times = bench.run_steps(state, batch, FLAGS.steps)
      step = float(np.median(times))
    baseline = baseline or (memory.temp_bytes, flops)
    rows.append([f"`{policy}`", common.si(memory.temp_bytes, "B"),
                 f"{memory.temp_bytes / baseline[0]:.2f}", common.si(memory.peak_bytes, "B"),
                 common.si(flops), f"{flops / baseline[1]:.2f}",
                 "-" if step != step else f"{step:.3f}", f"{bench.compile_seconds:.0f}"])
    print(" | ".join(str(v) for v in rows[-1]), flush=True)
  command = ("python -m benchmarks.remat_policies " + " ".join(sys.argv[1:])).strip()
  first = split_policies(FLAGS.policies)[0]
  text = "\n".join([
      f"# Remat policies: {case}{' (quick)' if quick else ''}", "",
      f"Command: `{command}`", "", f"Machine: {common.machine_info()}", "",
      f"Video-stage train step, batch {FLAGS.batch}, dtype {config.model.dtype}, `model.remat` "
      f"on; XLA:CPU concurrency-optimised scheduler off. Memory and FLOPs are XLA's analyses "
      f"of the compiled step (peak = arguments + outputs - aliases + temporaries); ratios are "
      f"against `{first}`.", "",
      common.markdown_table(["model.remat_policy", "temporaries", f"x {first}", "peak",
                             "FLOPs / step", f"x {first}", "step s (median)", "compile s"],
                            rows), ""])
  print(text)
  common.write_report(text, FLAGS.output)


if __name__ == "__main__":
  define_flags()
  app.run(main)
