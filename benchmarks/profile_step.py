r"""Where the train step's time goes: a `jax.profiler` trace aggregated by HLO op kind.

The video-stage train step of one `config:TxHxW` case (as in `benchmarks.train_step`) is
compiled, stepped once to warm up, and stepped `--steps` times under `jax.profiler.trace`.
XLA:CPU records one trace event per executed thunk, named after its HLO instruction; each is
matched to the compiled HLO to classify it (convolution, dot, a fusion by the ops it fuses:
reduction / transpose-copy / elementwise, ...) and to find the model layer it came from (the
`op_name` metadata). Two tables result: time by kind and time by layer kind. Times are summed
thread time (XLA runs independent thunks concurrently), so shares, not absolutes, are the
reliable part on a shared machine. The output also lists the slowest instructions.

  python -m benchmarks.profile_step --case=base:16x32x32
  python -m benchmarks.profile_step --quick            # two-level tiny model, a smoke run
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import re
import tempfile

from absl import app
from absl import flags
import jax

from benchmarks import common
from benchmarks import train_setup
from stunet.train import measure

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags, defined only when run as a script: the tests import this
  module beside other benchmarks that define flags of the same names."""
  flags.DEFINE_string("case", "base:16x32x32", "config:TxHxW[:field=value,...] to profile.")
  flags.DEFINE_string("dtype", "float32", "model.dtype ('' = the config's own).")
  flags.DEFINE_enum("remat", "config", ["config", "on", "off"], "model.remat.")
  flags.DEFINE_integer("steps", 2, "Traced steps (after one warm-up step).")
  flags.DEFINE_integer("top", 25, "Slowest instructions to list.")
  flags.DEFINE_bool("quick", False, "Two-level tiny model at 4x8x8: a smoke run.")
  flags.DEFINE_string("output", "benchmarks/results/profile_step.md",
                      "Markdown results ('' = print only).")


# `%name = type opcode(operands), ..., calls=%computation, ... metadata={op_name="..."}`.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([\w\-]+)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


@dataclasses.dataclass
class Instruction:
  name: str
  opcode: str
  shape: str
  calls: str | None
  op_name: str


def parse_hlo(text: str) -> tuple[dict[str, Instruction], dict[str, list[Instruction]]]:
  """The compiled module's instructions by name, and each computation's instructions."""
  by_name: dict[str, Instruction] = {}
  computations: dict[str, list[Instruction]] = collections.defaultdict(list)
  current = None
  for line in text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      calls = _CALLS.search(line)
      op_name = _OP_NAME.search(line)
      inst = Instruction(match.group(1), match.group(3), match.group(2),
                         calls.group(1) if calls else None, op_name.group(1) if op_name else "")
      by_name[inst.name] = inst
      if current is not None:
        computations[current].append(inst)
      continue
    match = _COMPUTATION.match(line)
    if match:  # a computation header (its parameter list may hold "/*index=5*/" comments)
      current = match.group(1)
  return by_name, computations


def fused_opcodes(inst: Instruction, computations: dict[str, list[Instruction]],
                  seen: frozenset[str] = frozenset()) -> set[str]:
  """Opcodes inside a fusion (recursively), or the instruction's own opcode."""
  if inst.calls is None or inst.calls not in computations or inst.calls in seen:
    return {inst.opcode}
  out: set[str] = set()
  for inner in computations[inst.calls]:
    out |= fused_opcodes(inner, computations, seen | {inst.calls})
  return out


def op_kind(inst: Instruction, computations: dict[str, list[Instruction]]) -> str:
  """A coarse class of what an executed instruction does."""
  ops = fused_opcodes(inst, computations)
  if "convolution" in ops:
    return "convolution"
  if "dot" in ops:
    return "dot (matmul)"
  if ops & {"reduce", "reduce-window"}:
    return "reduction fusion (norms, softmax, bias grads)"
  if ops & {"transpose", "copy"} and not ops - {"transpose", "copy", "bitcast", "parameter",
                                                 "reshape", "broadcast", "convert"}:
    return "transpose / copy / layout"
  if ops & {"dynamic-slice", "dynamic-update-slice", "slice", "concatenate", "pad", "gather",
            "scatter"} and not ops & {"exponential", "multiply", "add", "divide", "tanh",
                                      "logistic", "rsqrt"}:
    return "slice / concat / pad"
  if ops & {"transpose"}:
    return "elementwise fusion with transpose"
  if inst.opcode in ("while", "conditional", "call", "custom-call", "all-reduce"):
    return inst.opcode
  return "elementwise fusion"


_LAYER_PATTERNS = (
    ("temporal attention", re.compile(r"temporal_\d+/attention_|TemporalAttentionBlock")),
    ("temporal conv block", re.compile(r"temporal_\d+/conv_block|TemporalConvBlock")),
    ("temporal resample", re.compile(r"temporal_(down|up)\b")),
    ("spatial attention / transformer", re.compile(r"/attn_\d+|SpatialTransformer")),
    ("res block", re.compile(r"/res_\d+|ResBlock")),
    ("spatial resample", re.compile(r"/(down|up)sample")),
    ("text encoder", re.compile(r"text_encoder|TextEncoder|encoder/")),
    ("optimizer / EMA", re.compile(r"adam|optax|ema|scale_by|apply_updates", re.IGNORECASE)),
)


def layer_kind(op_name: str) -> str:
  for label, pattern in _LAYER_PATTERNS:
    if pattern.search(op_name):
      return label
  return "other (embeddings, loss, in/out convs)" if op_name else "no metadata"


def thunk_times(trace_dir: str) -> dict[str, float]:
  """Summed duration (s) of the trace events per executed HLO instruction name."""
  from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
  if not files:
    raise RuntimeError(f"jax.profiler wrote no .xplane.pb under {trace_dir}")
  totals: dict[str, float] = collections.defaultdict(float)
  for plane in ProfileData.from_file(files[-1]).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):
        continue  # the python thread and others, not XLA's executors
      for event in line.events:
        totals[event.name] += event.duration_ns * 1e-9
  return totals


def aggregate(times: dict[str, float], by_name: dict[str, Instruction],
              computations: dict[str, list[Instruction]]):
  kinds: dict[str, float] = collections.defaultdict(float)
  layers: dict[str, float] = collections.defaultdict(float)
  matched = []
  for name, seconds in times.items():
    inst = by_name.get(name)
    if inst is None:
      continue  # executor bookkeeping ("ThunkExecutor::Execute", "end: ...")
    kinds[op_kind(inst, computations)] += seconds
    layers[layer_kind(inst.op_name)] += seconds
    matched.append((seconds, inst))
  matched.sort(key=lambda x: -x[0])
  return kinds, layers, matched


def share_table(title: str, totals: dict[str, float], steps: int) -> str:
  whole = sum(totals.values()) or 1.0
  rows = [[k, f"{v / steps:.3f}", f"{100 * v / whole:.1f}%"]
          for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]
  return common.markdown_table([title, "thread s / step", "share"], rows)


def main(argv):
  del argv
  quick = FLAGS.quick
  name, frames, resolution, overrides = train_setup.parse_case(
      "tiny:4x8x8" if quick else FLAGS.case)
  if quick:
    overrides = dict(train_setup.QUICK_MODEL, **overrides)
  remat = {"config": None, "on": True, "off": False}[FLAGS.remat]
  config = train_setup.benchmark_config(name, frames=frames, resolution=resolution, batch=1,
                                        dtype=FLAGS.dtype or None, remat=remat, **overrides)
  bench = train_setup.TrainStepSetup(config)
  compiled = bench.compile_abstract()
  print(f"compiled in {bench.compile_seconds:.0f} s", flush=True)
  by_name, computations = parse_hlo(compiled.as_text())
  state = measure.random_like(bench.abstract_state())
  batch = bench.make_batch()
  state, _ = bench.run_steps(state, batch, 1)
  steps = 1 if quick else FLAGS.steps
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      state, step_times = bench.run_steps(state, batch, steps)
    times = thunk_times(trace_dir)
  kinds, layers, matched = aggregate(times, by_name, computations)
  flops = measure.flops(compiled)
  wall = sorted(step_times)[len(step_times) // 2]
  top = [[f"{s / steps:.3f}", inst.name, inst.opcode, inst.shape[:60],
          "/".join(inst.op_name.split("/")[-4:])[:80]]  # the layer path's tail
         for s, inst in matched[:FLAGS.top]]
  case = FLAGS.case if not quick else "tiny:4x8x8 (quick)"
  text = "\n".join([
      f"# Train-step profile: {case}", "",
      f"Command: `python -m benchmarks.profile_step --case={case} --dtype={FLAGS.dtype} "
      f"--remat={FLAGS.remat} --steps={steps}`", "", f"Machine: {common.machine_info()}", "",
      f"Step (traced, median): {wall:.3f} s; XLA cost analysis: {common.si(flops)} FLOPs/step "
      f"({common.si(flops / wall, 'FLOP/s')} achieved). Thread time summed over XLA's "
      f"executor threads: {sum(kinds.values()) / steps:.3f} s / step.", "",
      "## Time by op kind", "", share_table("op kind", kinds, steps), "",
      "## Time by layer (HLO op_name metadata)", "", share_table("layer", layers, steps), "",
      f"## The {len(top)} slowest instructions", "",
      common.markdown_table(["thread s / step", "instruction", "opcode", "shape", "op_name"],
                            top), ""])
  print(text)
  common.write_report(text, FLAGS.output)


if __name__ == "__main__":
  define_flags()
  app.run(main)
