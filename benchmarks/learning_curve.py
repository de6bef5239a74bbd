r"""Learning curve of a trained run: detector accuracy of each checkpoint vs training time.

Samples the same captions of a split (same seed) from every saved checkpoint of one stage of
`--workdir` and scores them with the analytic detector (`stunet.eval.learning_curve`); each
row also shows the stage's training minutes at that step (`elapsed_s` of its
`metrics.jsonl`, "n/a" for runs logged before it existed) and, for the `video` stage, the
total with the `t2i` stage it started from. Configs are compared at equal training time, not
equal steps, so this is the curve to put next to another config's.

  python -m benchmarks.learning_curve --workdir=runs/quickstart --stage=video \
      --output=benchmarks/results/learning_curve_quickstart.md \
      --plot=benchmarks/results/learning_curve_quickstart.png

The default `--split=validation` holds captions not trained on that configs may be tuned on;
keep `--split=test` (the held-out combinations) for final numbers. `--plot` needs the `plot`
extra (matplotlib). Bad input (no such run or step, ...) is reported as one `error:` line
(`experiments.cli`), since the script reads a user's run like `experiments/evaluate.py`.
"""

from __future__ import annotations

import shlex

from absl import app
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's directory.")
_STAGE = flags.DEFINE_string("stage", "video", "The stage whose checkpoints are scored: "
                             "'t2i' or 'video'.")
_SPLIT = flags.DEFINE_enum("split", "validation", ["train", "validation", "test"],
                           "Dataset split whose captions are sampled (test: final numbers "
                           "only).")
_MAX_PROMPTS = flags.DEFINE_integer("max_prompts", 64, "Sample at most this many captions per "
                                    "checkpoint (0 = the whole split).")
_STEPS = flags.DEFINE_string("steps", "", "Comma-separated checkpoint steps to score "
                             "('' = every saved one).")
_SAMPLER = flags.DEFINE_enum("sampler", None, ["ddpm", "ddim"], "Sampler (default: the run's "
                             "config).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Guidance scale (default: the run's config).")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", None, "Denoising steps (default: the "
                                     "run's config).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (the same for every checkpoint).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Samples per device call (0 = all at "
                                   "once).")
_OUTPUT = flags.DEFINE_string("output", "", "Markdown report ('' = print only).")
_PLOT = flags.DEFINE_string("plot", "", "PNG of the scores against training minutes "
                            "('' = none).")
flags.mark_flags_as_required(["workdir"])


def parse_steps(text: str) -> list[int] | None:
  """'100,200' -> [100, 200]; '' -> None (every saved step)."""
  parts = [p.strip() for p in text.split(",") if p.strip()]
  if not parts:
    return None
  try:
    steps = [int(p) for p in parts]
  except ValueError:
    raise ValueError(f"--steps must be comma-separated integers, e.g. 1000,2000; got "
                     f"{text!r}") from None
  if any(s < 0 for s in steps):
    raise ValueError(f"--steps must be non-negative, got {text!r}")
  return steps


def command_line() -> str:
  """The command that reproduces this report: every flag that changes it, with its value."""
  args = [f"--workdir={_WORKDIR.value}", f"--stage={_STAGE.value}",
          f"--split={_SPLIT.value}", f"--max_prompts={_MAX_PROMPTS.value}",
          f"--steps={_STEPS.value}", f"--seed={_SEED.value}"]
  for holder in (_SAMPLER, _GUIDANCE, _SAMPLE_STEPS):
    if holder.value is not None:
      args.append(f"--{holder.name}={holder.value}")
  if _BATCH_SIZE.value:
    args.append(f"--batch_size={_BATCH_SIZE.value}")
  args += [f"--output={_OUTPUT.value}", f"--plot={_PLOT.value}"]
  return "python -m benchmarks.learning_curve " + " ".join(shlex.quote(a) for a in args)


def _settings(rows: list[dict]) -> str:
  first = rows[0]
  return (f"{first['num_prompts']} captions of the `{first['split']}` split per checkpoint, "
          f"one sample each, seed {_SEED.value}; sampler {first['sampler']}, "
          f"{first['sample_steps']} steps, guidance {first['guidance']}.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.init(0)
  from stunet.eval import learning_curve

  steps = parse_steps(_STEPS.value)
  if _PLOT.value:
    try:
      learning_curve.require_matplotlib()  # fail before minutes of sampling, not after
    except ImportError as e:
      cli.fail(str(e))
  from benchmarks import common  # JAX: after cli.init

  rows = learning_curve.learning_curve(
      _WORKDIR.value, _STAGE.value, split=_SPLIT.value, max_prompts=_MAX_PROMPTS.value,
      steps=steps, sampler=_SAMPLER.value, guidance=_GUIDANCE.value,
      sample_steps=_SAMPLE_STEPS.value, seed=_SEED.value, batch_size=_BATCH_SIZE.value,
      progress=True)
  lines = [f"# Learning curve: {_STAGE.value} stage of `{_WORKDIR.value}`", "",
           f"Command: `{command_line()}`", "", f"Machine: {common.machine_info()}", "",
           _settings(rows) + " Training minutes are the stage's wall-clock at the checkpoint "
           "(`elapsed_s` of metrics.jsonl, compiles and checkpoint writes included; n/a: "
           "not logged by this run); the total adds the stages it started from. Scores are "
           "fractions (detector, `stunet.eval.metrics`): detected = samples with any object "
           "found, attributes per caption object, count per sample, presence = frames the "
           "object is seen in, colour recall = the caption's colours on screen whatever the "
           "shape."]
  if _STAGE.value == "t2i":
    lines[-1] += (" T2I images are scored as static clips, so motion and speed are not "
                  "shown.")
  if _SPLIT.value == "test":
    lines[-1] += (" This is the test split: report it, do not tune configs or pick steps "
                  "on it.")
  lines += ["", learning_curve.to_markdown(rows)]
  if _PLOT.value:
    learning_curve.plot(rows, _PLOT.value,
                        title=f"{_WORKDIR.value}: {_STAGE.value} stage ({_SPLIT.value})")
    lines += [f"Plot: `{_PLOT.value}`", ""]
  report = "\n".join(lines)
  print(report)
  common.write_report(report, _OUTPUT.value)


if __name__ == "__main__":
  cli.run(main)
