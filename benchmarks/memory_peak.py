r"""What the train step's peak memory is made of, from XLA's buffer liveness at the peak.

The video-stage train step of one case is compiled (never run) with XLA's dumps on; XLA's
live-range dump lists every buffer live at the peak of its schedule. Each is classified by
its HLO instruction's `op_name` metadata: the train state (arguments), values recomputed
inside `model.remat` blocks (by U-Net level), forward activations kept for the backward pass,
backward cotangents, and values without metadata (layout copies and dtype conversions XLA
inserted, named by fusion kind). A table of bytes per class results.

  python -m benchmarks.memory_peak --case=base:80x32x32
  python -m benchmarks.memory_peak --case=base:80x32x32 --model='temporal_factors=(1, 1, 1, 1)'
  python -m benchmarks.memory_peak --quick         # two-level tiny model, a smoke run

XLA:CPU's concurrency-optimised scheduler is off by default here, as in
`benchmarks.temporal_scaling` (it defeats remat); `--concurrency_scheduler` turns it on.
"""

from __future__ import annotations

import ast
import collections
import glob
import os
import re
import shutil
import sys
import tempfile

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags, defined only when run as a script: the tests import this
  module beside other benchmarks that define flags of the same names."""
  flags.DEFINE_string("case", "base:80x32x32", "config:TxHxW to compile.")
  flags.DEFINE_multi_string("model", [], "field=python literal model override.")
  flags.DEFINE_bool("concurrency_scheduler", False,
                    "Keep XLA:CPU's concurrency-optimised scheduler on.")
  flags.DEFINE_integer("top", 25, "Rows of the table.")
  flags.DEFINE_bool("quick", False, "Two-level tiny model at 4x8x8: a smoke run.")
  flags.DEFINE_string("output", "benchmarks/results/memory_peak.md",
                      "Markdown results ('' = print only).")


_PEAK_VALUE = re.compile(r"\s+([\w.\-]+)\{[\d,]*\}: (\d+) bytes")
_INSTRUCTION = re.compile(r"\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_LEVEL = re.compile(r"/(down_\d+|up_\d+|mid)/")


def peak_values(live_range_text: str) -> list[tuple[str, int]]:
  """(HLO value name, bytes) of every buffer XLA lists as live at its schedule's peak."""
  lines = live_range_text.splitlines()
  start = next((i for i, l in enumerate(lines) if "(peak):" in l), None)
  if start is None:
    raise ValueError("no 'Live ranges at ... (peak):' section in the live-range dump")
  out = []
  for line in lines[start + 1:]:
    match = _PEAK_VALUE.match(line)
    if not match:
      break
    out.append((match.group(1), int(match.group(2))))
  return out


def op_names(hlo_text: str) -> dict[str, str]:
  """Instruction name -> its op_name metadata ('' when it has none)."""
  out = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      op = _OP_NAME.search(line)
      out[match.group(1)] = op.group(1) if op else ""
  return out


def classify(name: str, op_name: str) -> str:
  if name.startswith("state_") or name.startswith("Arg_") or "parameter" in name:
    return "train state and batch (arguments)"
  level = _LEVEL.search(op_name)
  where = level.group(1) if level else "outside the U-Net levels"
  if "rematted_computation" in op_name:
    return f"recomputed inside remat blocks, {where}"
  if not op_name:
    return f"no metadata: {re.sub(r'[.][0-9]+$', '', name)}"
  if "transpose(jvp" in op_name:
    return f"backward cotangents, {where}"
  if "jvp(" in op_name:
    return f"forward activations kept for backward, {where}"
  return "other (loss, optimiser, EMA, text)"


def breakdown(values: list[tuple[str, int]], names: dict[str, str]) -> dict[str, list[int]]:
  out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
  for name, size in values:
    key = classify(name, names.get(name, ""))
    out[key][0] += size
    out[key][1] += 1
  return out


def main(argv):
  del argv
  dump_dir = tempfile.mkdtemp(prefix="memory_peak_")
  flags_list = ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                f"--xla_dump_to={dump_dir}", "--xla_dump_hlo_as_text"]
  if not FLAGS.concurrency_scheduler:
    flags_list.append("--xla_cpu_enable_concurrency_optimized_scheduler=false")
  os.environ["XLA_FLAGS"] = " ".join(flags_list)
  # Imported after XLA_FLAGS is set: JAX reads it when its CPU backend starts.
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from benchmarks import train_setup  # pylint: disable=g-import-not-at-top
  from stunet.train import measure  # pylint: disable=g-import-not-at-top

  quick = FLAGS.quick
  name, frames, resolution, overrides = train_setup.parse_case(
      "tiny:4x8x8" if quick else FLAGS.case)
  if quick:
    overrides = dict(train_setup.QUICK_MODEL, **overrides)
  for item in FLAGS.model:
    field, _, value = item.partition("=")
    overrides[field.strip()] = ast.literal_eval(value.strip())
  config = train_setup.benchmark_config(name, frames=frames, resolution=resolution, batch=1,
                                        **overrides)
  bench = train_setup.TrainStepSetup(config)
  compiled = bench.compile_abstract()
  memory = measure.memory(compiled)
  # The train step is the largest module dumped (the others are small initialisers).
  live_files = sorted(glob.glob(os.path.join(dump_dir, "*after_optimizations-live-range.txt")),
                      key=os.path.getsize)
  if not live_files:
    raise RuntimeError(f"XLA wrote no live-range dump under {dump_dir}")
  live_file = live_files[-1]
  hlo_file = live_file.replace("-live-range.txt", ".txt")
  with open(live_file, encoding="utf-8") as f:
    values = peak_values(f.read())
  with open(hlo_file, encoding="utf-8") as f:
    names = op_names(f.read())
  shutil.rmtree(dump_dir, ignore_errors=True)
  groups = breakdown(values, names)
  total = sum(v[0] for v in groups.values())
  rows = [[k, common.si(v[0], "B"), f"{100 * v[0] / total:.1f}%", v[1]]
          for k, v in sorted(groups.items(), key=lambda kv: -kv[1][0])[:FLAGS.top]]
  command = ("python -m benchmarks.memory_peak " + " ".join(sys.argv[1:])).strip()
  text = "\n".join([
      f"# Peak memory of the train step: {FLAGS.case if not quick else 'tiny:4x8x8 (quick)'}"
      + (f" with {', '.join(FLAGS.model)}" if FLAGS.model else ""), "",
      f"Command: `{command}`", "", f"Machine: {common.machine_info()}", "",
      f"Config dtype {config.model.dtype}, remat {config.model.remat}; XLA:CPU concurrency-"
      f"optimised scheduler {'on' if FLAGS.concurrency_scheduler else 'off'}. XLA memory analysis: "
      f"arguments {common.si(memory.argument_bytes, 'B')}, temporaries "
      f"{common.si(memory.temp_bytes, 'B')}, peak "
      f"{common.si(memory.peak_bytes, 'B')}; {len(values)} buffers live at "
      f"the schedule's peak, {common.si(total, 'B')} in all:", "",
      common.markdown_table(["class (from op_name metadata)", "bytes at peak", "share",
                             "buffers"], rows), ""])
  print(text)
  common.write_report(text, FLAGS.output)


if __name__ == "__main__":
  define_flags()
  app.run(main)
