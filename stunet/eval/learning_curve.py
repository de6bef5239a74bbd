"""Learning curves: detector accuracy of every saved checkpoint against training wall-clock.

A run's loss falls smoothly long before its samples show the captioned objects, and the
configs are compared at equal *time*, not equal steps (a wider model takes fewer steps per
minute). `learning_curve` samples the same captions with the same noise from each saved
checkpoint of one stage (`stunet.sampling.sample_run`) and scores them with the analytic detector
(`metrics.evaluate_clips`); each row carries the stage's training wall-clock at that step
(`elapsed_s` of `metrics.jsonl`, compiles and checkpoint writes included, see
`stunet.train.metrics.MetricsWriter.write`) and that of the stages it started from, so a
video-stage row also shows the total time it took to get there.

Stages: `t2i` (each image is scored as a static 4-frame clip, so the motion and speed columns
are left out: a still image has neither) and `video`. Runs logged before `elapsed_s` existed
get NaN times ("n/a" in the tables) rather than an error.

`to_markdown` renders the rows as a table and `plot` draws accuracy against minutes (needs the
`plot` extra: matplotlib). `benchmarks/learning_curve.py` is the command line.
"""

from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np

from stunet.eval import metrics as metrics_lib
from stunet.eval import run_evaluation
from stunet.train import metrics as train_metrics

# Stages whose samples the detector can score against their captions.
STAGES = ("t2i", "video")
# A T2I image is scored as a static clip of this many frames (the detector tracks over frames).
STATIC_FRAMES = 4
# Metric columns of a row, in table order; the `video` stage adds `MOTION_COLUMNS`.
ATTRIBUTE_COLUMNS = ("colour", "shape", "size", "count")
MOTION_COLUMNS = ("motion", "speed")
OTHER_COLUMNS = ("presence", "colour_recall")
_TITLES = {"detected_fraction": "detected", "colour": "colour", "shape": "shape",
           "size": "size", "count": "count", "motion": "motion", "speed": "speed",
           "presence": "presence", "colour_recall": "colour recall (lenient)"}
PLOT_EXTRA_HINT = "pip install -e '.[plot]'"


def metric_columns(stage: str) -> tuple[str, ...]:
  """The score keys of a row of `stage` (all in [0, 1])."""
  motion = MOTION_COLUMNS if stage == "video" else ()
  return ("detected_fraction",) + ATTRIBUTE_COLUMNS + motion + OTHER_COLUMNS


def _check_stage(stage: str) -> None:
  from stunet.train import stages as stages_lib  # JAX-heavy
  stages_lib.get_stage(stage)  # unknown: ValueError naming the registered stages
  if stage not in STAGES:
    raise ValueError(f"learning curves score samples of the stages {STAGES} against their "
                     f"captions; got the {stage!r} stage")


def saved_steps(workdir: str, stage: str) -> list[int]:
  """The checkpoint steps of a stage, sorted (orbax's temporary directories are skipped)."""
  directory = os.path.join(os.path.abspath(workdir), stage, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def elapsed_records(stage_dir: str) -> list[tuple[int, float]]:
  """`(step, elapsed_s)` of the records of `<stage_dir>/metrics.jsonl` that carry it.

  Empty when the file is missing or was written before `elapsed_s` was logged.
  """
  path = os.path.join(stage_dir, "metrics.jsonl")
  if not os.path.isfile(path):
    return []
  out = [(int(r["step"]), float(r["elapsed_s"])) for r in train_metrics.read_jsonl(path)
         if r.get("elapsed_s") is not None]
  return sorted(out)


def elapsed_at(records: Sequence[tuple[int, float]], step: int) -> float:
  """Training seconds at `step`: its record's, else the nearest earlier one's, else NaN.

  Only the last record of each logging window has `elapsed_s`; a checkpoint step is always
  such a record in runs that log it (the loop flushes the metrics when it saves).
  """
  earlier = [e for s, e in records if s <= step]
  return earlier[-1] if earlier else math.nan


def _stage_config(stage_dir: str) -> dict | None:
  path = os.path.join(stage_dir, "config.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def earlier_stages_elapsed(workdir: str, stage: str) -> float:
  """Training seconds of the stages `stage` started from (the whole parent chain).

  0 for a stage trained from scratch (`t2i`). The parent is the stage of the same workdir, or
  the run or checkpoint `config.stage.<stage>.init_from` names (then its time at that
  checkpoint, or its final time). NaN when it is not known: imported public weights, a parent
  that is not on this machine, or one whose metrics have no `elapsed_s`.
  """
  from stunet.train import stages as stages_lib  # JAX-heavy
  parent = stages_lib.get_stage(stage).parent
  if parent is None:
    return 0.0
  stage_dir = os.path.join(os.path.abspath(workdir), stage)
  config = _stage_config(stage_dir) or {}
  init_from = str(config.get("stage", {}).get(stage, {}).get("init_from") or "")
  step = None
  if not init_from:
    parent_dir = os.path.join(os.path.abspath(workdir), parent)
  else:  # as `stunet.train.loop._parent_checkpoint` resolves it
    path = os.path.abspath(init_from).rstrip("/")
    if os.path.isdir(os.path.join(path, "checkpoints")):
      parent_dir = path
    elif os.path.basename(path).isdigit():  # <stage dir>/checkpoints/<step>
      parent_dir, step = os.path.dirname(os.path.dirname(path)), int(os.path.basename(path))
    else:
      return math.nan
  records = elapsed_records(parent_dir)
  if not records:
    return math.nan
  own = records[-1][1] if step is None else elapsed_at(records, step)
  if os.path.basename(parent_dir) != parent or _stage_config(parent_dir) is None:
    # Not a stage directory of a workdir: its own parents cannot be found.
    return own if stages_lib.get_stage(parent).parent is None else math.nan
  return own + earlier_stages_elapsed(os.path.dirname(parent_dir), parent)


def score(pixels: np.ndarray, prompts: Sequence[str], fps: float, stage: str) -> dict:
  """The metric columns of one checkpoint's samples (float32 in [-1, 1]).

  `t2i` images ``[n h w 3]`` become static clips of `STATIC_FRAMES` frames; their motion and
  speed are not scored.
  """
  from stunet.data import video_write
  clips = video_write.to_uint8(pixels)
  if stage == "t2i":
    if clips.ndim != 4:
      raise ValueError(f"the t2i stage should sample images [n h w 3], got {clips.shape}")
    clips = np.repeat(clips[:, None], STATIC_FRAMES, axis=1)
  elif clips.ndim != 5:
    raise ValueError(f"the {stage!r} stage should sample clips [n t h w 3], got {clips.shape}")
  m = metrics_lib.evaluate_clips(clips, prompts, fps)
  values = {"detected_fraction": m["detected_fraction"], **m["accuracy"],
            "presence": m["consistency"]["presence"],
            "colour_recall": m["colour_presence"]["recall"]}
  return {k: float(values[k]) for k in metric_columns(stage)}


def learning_curve(workdir: str, stage: str, *, split: str = "validation",
                   max_prompts: int = 64, steps: Sequence[int] | None = None,
                   sampler: str | None = None, guidance: float | None = None,
                   sample_steps: int | None = None, seed: int = 0, batch_size: int = 0,
                   out_dir: str | None = None, mesh=None,
                   progress: bool = False) -> list[dict]:
  """Scores the samples of each saved checkpoint of `stage`; one row per step (module doc).

  Every checkpoint samples the same captions with the same seed, so rows differ only in the
  weights. The default `validation` split holds captions not trained on that configs may be
  tuned on; the `test` split (the held-out combinations) is for final numbers only: choosing
  a config or a step by its test accuracy makes that accuracy optimistic.

  Args:
    workdir: a training run's directory.
    stage: 't2i' or 'video'.
    split: dataset split whose captions are sampled.
    max_prompts: at most this many captions (`run_evaluation.select_examples`; 0 = all).
    steps: the checkpoint steps to score (None or empty: every saved one).
    sampler / guidance / sample_steps: sampling settings (None: the run's `config.diffusion`).
    seed: sampling seed, the same for every checkpoint.
    batch_size: samples per device call (0 = all at once).
    out_dir: where the samples are written, one `step<step>` folder per checkpoint (default
      ``<workdir>/eval/learning_curve/<stage>_<split>``).
    mesh: the mesh to sample on (default: the run's `config.mesh` over all devices).
    progress: progress bars while sampling.

  Returns:
    Rows with `stage`, `step`, `elapsed_s` (the stage's training seconds at the step, NaN
    when not logged), `earlier_stages_s` (`earlier_stages_elapsed`), `total_s` (their sum),
    `split`, `num_prompts`, the sampling settings used (`sampler`, `sample_steps`,
    `guidance`), `samples_dir` and the scores of `metric_columns(stage)`.
  """
  from stunet.sampling import sample_run  # JAX-heavy: imported when sampling
  from stunet.sampling import trained_stage

  _check_stage(stage)
  run_evaluation.EvalOptions(split=split, max_prompts=max_prompts).validate()
  saved = saved_steps(workdir, stage)
  if not saved:
    raise ValueError(f"the {stage!r} stage of {os.path.abspath(workdir)} has no checkpoint; "
                     f"train it first: {trained_stage.TRAIN_COMMAND.format(workdir=workdir)}")
  if not steps:
    steps = saved
  else:
    steps = sorted({int(s) for s in steps})
    missing = [s for s in steps if s not in saved]
    if missing:
      raise ValueError(f"no {stage!r} checkpoint for step(s) {missing} in "
                       f"{os.path.abspath(workdir)}; saved steps: {saved}")
  config = trained_stage.load_run_config(workdir, stage)
  if config.data.get("files"):
    raise ValueError(f"the run trained on data.files={config.data.files!r}; learning curves "
                     f"read the captions of a built shapes_video split (data.builder_config)")
  examples, src = run_evaluation.read_split(config.data, split)
  if not examples:
    raise ValueError(f"split {split!r} of {config.data.builder_config} is empty")
  prompts = [e.caption for e in run_evaluation.select_examples(examples, max_prompts)]
  fps = float(config.data.get("fps") or src.metadata["fps"])
  options = sample_run.SampleOptions(num_samples=1, seed=seed, steps=sample_steps,
                                     guidance=guidance, sampler=sampler, batch_size=batch_size)
  out_dir = out_dir or os.path.join(os.path.abspath(workdir), "eval", "learning_curve",
                                    f"{stage}_{split}")
  records = elapsed_records(os.path.join(os.path.abspath(workdir), stage))
  before = earlier_stages_elapsed(workdir, stage)
  rows = []
  for step in steps:
    result = sample_run.sample_run(workdir, prompts, stage=stage, step=step, options=options,
                                   out_dir=os.path.join(out_dir, f"step{step}"),
                                   progress=progress, mesh=mesh)
    elapsed = elapsed_at(records, step)
    used = result.entries[0].settings if result.entries else {}
    rows.append({"stage": stage, "step": step, "split": split, "num_prompts": len(prompts),
                 "sampler": used.get("sampler"), "sample_steps": used.get("steps"),
                 "guidance": used.get("guidance"), "samples_dir": result.out_dir,
                 "elapsed_s": elapsed, "earlier_stages_s": before, "total_s": elapsed + before,
                 **score(result.pixels, prompts, fps, stage)})
  return rows


def _minutes(seconds: float) -> str:
  return "n/a" if not math.isfinite(seconds) else f"{seconds / 60:.1f}"


def _value(value: float) -> str:
  return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def to_markdown(rows: Sequence[dict], *, title: str | None = None) -> str:
  """A table with one line per checkpoint: training minutes, then the scores.

  The total-minutes column (this stage plus the stages it started from) appears when some row
  has earlier stages (or an unknown time for them).
  """
  if not rows:
    raise ValueError("no rows: learning_curve found no checkpoint to score")
  stage = rows[0]["stage"]
  columns = metric_columns(stage)
  with_total = any(r["earlier_stages_s"] != 0 for r in rows)
  header = ["step", f"{stage} train min"] + (["total train min"] if with_total else [])
  header += [_TITLES[c] for c in columns]
  lines = [f"## {title}", ""] if title else []
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in rows:
    cells = [str(r["step"]), _minutes(r["elapsed_s"])]
    cells += [_minutes(r["total_s"])] if with_total else []
    cells += [_value(r[c]) for c in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def require_matplotlib():
  """`matplotlib.pyplot` on the Agg backend; an ImportError naming the `plot` extra if absent."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError(f"the learning-curve plot needs matplotlib (the 'plot' extra): "
                      f"{PLOT_EXTRA_HINT}") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def plot(rows: Sequence[dict], path: str, *, title: str = "") -> str:
  """A PNG of every score against training minutes (total when known, else the stage's).

  Runs without `elapsed_s` are drawn against the step instead, so old runs still get a curve.
  Returns `path`.
  """
  if not rows:
    raise ValueError("no rows: learning_curve found no checkpoint to score")
  plt = require_matplotlib()
  stage = rows[0]["stage"]
  if all(math.isfinite(r["total_s"]) for r in rows):
    xs, label = [r["total_s"] / 60 for r in rows], "training minutes (all stages)"
  elif all(math.isfinite(r["elapsed_s"]) for r in rows):
    xs, label = [r["elapsed_s"] / 60 for r in rows], f"training minutes ({stage} stage)"
  else:
    xs, label = [r["step"] for r in rows], f"{stage} step (no elapsed_s in metrics.jsonl)"
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for column in metric_columns(stage):
    ax.plot(xs, [r[column] for r in rows], marker="o", label=_TITLES[column])
  ax.set_xlabel(label)
  ax.set_ylabel("fraction")
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.set_title(title or f"{stage} stage: detector scores of each checkpoint")
  ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
