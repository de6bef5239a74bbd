"""Evaluating a trained run on a dataset split's prompts (SPEC §1, §6; `experiments/evaluate.py`).

`evaluate_run` reads the captions of a `shapes_video` split (every test clip holds one of the
held-out (colour, shape, motion) combinations never seen in training), samples one clip per
caption from the run's latest `video` checkpoint (`stunet.sampling.sample_run`), runs the analytic
detector metrics (`metrics.evaluate_clips`) on them and, optionally, FVD-shapes against the
split's real clips. It writes into ``<workdir>/eval/<split>_step<step>/``:

  metrics.json   summary numbers overall, on the held-out and on the seen combinations and
                 on the fast-motion captions (a quick or a bouncing object: the motion that
                 keyframes sampled every k frames alias, SPEC §1), the settings, and per-clip
                 records
  metrics.md     the same summary as Markdown tables
  samples/       the sampled clips (mp4/GIF, contact sheets, XT slices, index.html)

With ``max_prompts`` the selection keeps both kinds of captions where a split has both (a
user-built split may): up to half from captions with a held-out combination, the rest from the
others, in split order.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Sequence

import numpy as np

from stunet.data import shapes_scene
from stunet.data import source as source_lib
from stunet.eval import caption_parser
from stunet.eval import metrics as metrics_lib

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class SplitExample:
  caption: str
  held_out: bool
  index: int  # position in the split


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What `evaluate_run` samples and measures.

  Attributes:
    split: dataset split whose captions are sampled ('test' holds the held-out combinations).
    max_prompts: cap on the number of captions (0 = the whole split).
    seed / steps / guidance / sampler / batch_size: sampling settings (None: the run's).
    fvd: also compute FVD-shapes against the split's real clips (trains or loads the small
      feature network; cached under ``feature_net_dir``).
    feature_net_dir: cache directory of the feature network ('' = ``<workdir>/eval``).
    checkpoint_step: the saved step to evaluate (None: the latest), e.g. an earlier checkpoint
      of a run for a comparison at equal compute.
  """
  split: str = "test"
  max_prompts: int = 0
  seed: int = 0
  steps: int | None = None
  guidance: float | None = None
  sampler: str | None = None
  batch_size: int = 0
  fvd: bool = False
  feature_net_dir: str = ""
  checkpoint_step: int | None = None

  def validate(self) -> None:
    if self.split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
    if not isinstance(self.max_prompts, int) or self.max_prompts < 0:
      raise ValueError(f"max_prompts must be an integer >= 0 (0 = all), got "
                       f"{self.max_prompts!r}")
    if self.checkpoint_step is not None and (not isinstance(self.checkpoint_step, int)
                                             or self.checkpoint_step < 0):
      raise ValueError(f"checkpoint_step must be an integer >= 0 (None = the latest), got "
                       f"{self.checkpoint_step!r}")


def _is_held_out(example: dict) -> bool:
  for k in range(int(example["num_objects"])):
    triple = (shapes_scene.COLOUR_NAMES[int(example["colour"][k])],
              shapes_scene.SHAPES[int(example["shape"][k])],
              shapes_scene.MOTIONS[int(example["motion"][k])])
    if triple in shapes_scene.HELD_OUT:
      return True
  return False


def is_fast_motion(caption: str) -> bool:
  """True when the caption names a quick or a bouncing object (`FAST_MOTION` subset)."""
  return any(o.speed == "quick" or o.motion == "bouncing"
             for o in caption_parser.parse_caption(caption))


FAST_MOTION = "fast_motion"


def _decode_caption(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def select_examples(examples: Sequence[SplitExample], max_prompts: int) -> list[SplitExample]:
  """All `examples`, or `max_prompts` of them: up to half held-out, the rest seen, in order."""
  if not max_prompts or max_prompts >= len(examples):
    return list(examples)
  held = [e for e in examples if e.held_out]
  seen = [e for e in examples if not e.held_out]
  n_held = min(len(held), max(1, max_prompts // 2) if held else 0)
  n_seen = min(len(seen), max_prompts - n_held)
  n_held = min(len(held), max_prompts - n_seen)
  return sorted(held[:n_held] + seen[:n_seen], key=lambda e: e.index)


def read_split(data_config, split: str) -> tuple[list[SplitExample], source_lib.Source]:
  """The captions of a built `shapes_video` split and the opened source."""
  if data_config.dataset != "shapes_video":
    raise ValueError(f"evaluation needs shapes_video data (its captions name what the detector "
                     f"checks); the run's data.dataset is {data_config.dataset!r}")
  src = source_lib.open_source(data_config.data_dir, data_config.dataset,
                               data_config.builder_config, split)
  if src.metadata.get("image"):
    raise ValueError(f"shapes_video/{data_config.builder_config} holds single images; the "
                     f"evaluation samples clips (use a video builder config)")
  examples = []
  for i in range(len(src.records)):
    ex = src.features.deserialize_example_np(src.records[i])
    examples.append(SplitExample(_decode_caption(ex["caption"]), _is_held_out(ex), i))
  return examples, src


def real_clips(src: source_lib.Source, indices: Sequence[int], frames: int, fps: int,
               resolution: int) -> np.ndarray:
  """uint8 ``[n frames res res 3]`` real clips sampled like the training pipeline (centre crop)."""
  stride = src.metadata["fps"] // fps
  out = []
  for i in indices:
    video = src.features.deserialize_example_np(src.records[i])["video"]
    video = video[::stride][:frames]
    top = (video.shape[1] - resolution) // 2
    left = (video.shape[2] - resolution) // 2
    out.append(video[:, top:top + resolution, left:left + resolution])
  return np.stack(out)


def _summary(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if k != "per_clip"}


def evaluate_run(workdir: str, options: EvalOptions = EvalOptions(), *,
                 stage: str = "video", feature_extractor: Callable | None = None,
                 progress: bool = True, out_dir: str | None = None,
                 mesh=None, tsr=None) -> dict:
  """Samples the split's captions from `workdir` and writes the metrics (module docstring).

  Args:
    workdir: a training run's directory (with a trained `stage`).
    options: split, cap and sampling settings.
    stage: the stage to sample ('video').
    feature_extractor: a user feature extractor (clips -> ``[n d]``) for the Fréchet distance;
      implies ``options.fvd``. Default: our small 3-D conv network (FVD-shapes).
    progress: progress bars while sampling.
    out_dir: output folder (default ``<workdir>/eval/<split>_step<step>``).
    mesh: the mesh to sample on (default: the run's `config.mesh` over all devices).
    tsr: a `sample_run.TSROptions`: `stage` samples keyframes and the TSR run fills the frames
      between them (the keyframes + TSR baseline); the clips are measured at the TSR run's fps.

  Returns:
    The metrics dict that was written to ``metrics.json``.
  """
  from stunet.sampling import sample_run  # JAX-heavy: imported when sampling
  from stunet.sampling import trained_stage
  from stunet.data import video_write

  options.validate()
  config = trained_stage.load_run_config(workdir, stage)
  if config.data.get("files"):
    raise ValueError(f"the run trained on data.files={config.data.files!r}; evaluation reads a "
                     f"built shapes_video split (data.builder_config)")
  examples, src = read_split(config.data, options.split)
  if not examples:
    raise ValueError(f"split {options.split!r} of {config.data.builder_config} is empty")
  chosen = select_examples(examples, options.max_prompts)
  prompts = [e.caption for e in chosen]
  sample_options = sample_run.SampleOptions(
      num_samples=1, seed=options.seed, steps=options.steps, guidance=options.guidance,
      sampler=options.sampler, batch_size=options.batch_size)
  step = _latest_step(workdir, stage) if options.checkpoint_step is None \
      else options.checkpoint_step
  out_dir = out_dir or os.path.join(os.path.abspath(workdir), "eval",
                                    f"{options.split}_step{step}")
  result = sample_run.sample_run(workdir, prompts, stage=stage, step=step,
                                 options=sample_options,
                                 out_dir=os.path.join(out_dir, "samples"), progress=progress,
                                 mesh=mesh, tsr=tsr)
  clips = video_write.to_uint8(result.pixels)
  if clips.ndim != 5:
    raise ValueError(f"stage {stage!r} produced images, not clips; evaluate a video stage")
  if tsr is not None:  # full clips at the TSR run's frame rate, not the keyframes'
    config = trained_stage.load_run_config(tsr.workdir, "tsr")
  fps = int(config.data.fps or src.metadata["fps"])

  extractor, real = None, None
  if options.fvd or feature_extractor is not None:
    real = real_clips(src, [e.index for e in chosen], clips.shape[1], fps, clips.shape[2])
    extractor = feature_extractor or _default_extractor(config, options, workdir)
  metrics = metrics_lib.evaluate_clips(clips, prompts, fps, real_clips=real,
                                       feature_extractor=extractor)
  held = np.asarray([e.held_out for e in chosen])
  fast = np.asarray([is_fast_motion(p) for p in prompts])
  subsets = {}
  for name, mask in (("held_out", held), ("seen", ~held), (FAST_MOTION, fast)):
    if mask.any():
      subsets[name] = _summary(metrics_lib.evaluate_clips(
          clips[mask], [p for p, m in zip(prompts, mask) if m], fps))
  record = {
      "workdir": os.path.abspath(workdir),
      "stage": stage,
      "step": result.step,
      "split": options.split,
      "dataset": f"{config.data.dataset}/{config.data.builder_config}",
      "num_split_examples": len(examples),
      "settings": {**dataclasses.asdict(options), **_run_settings(result)},
      "samples_dir": result.out_dir,
      "gallery": result.gallery_path,
      "summary": _summary(metrics),
      "subsets": subsets,
      "per_clip": [{**c, "held_out": bool(h), FAST_MOTION: bool(f)}
                   for c, h, f in zip(metrics["per_clip"], held, fast)],
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(_json_safe(record), f, indent=1, sort_keys=True)
  with open(os.path.join(out_dir, "metrics.md"), "w") as f:
    f.write(to_markdown(record))
  record["out_dir"] = out_dir
  return record


def _run_settings(result) -> dict:
  """The sampler settings shared by every clip (not the per-clip batch position)."""
  if not result.entries:
    return {}
  return {k: v for k, v in result.entries[0].settings.items()
          if k not in ("batch", "index_in_batch")}


def _latest_step(workdir: str, stage: str) -> int:
  from stunet.sampling import trained_stage
  directory = os.path.join(trained_stage.stage_dir(workdir, stage), "checkpoints")
  steps = [int(n) for n in os.listdir(directory) if n.isdigit()] \
      if os.path.isdir(directory) else []
  if not steps:
    raise FileNotFoundError(
        f"no checkpoint in {directory}; train the {stage!r} stage first: "
        f"{trained_stage.TRAIN_COMMAND.format(workdir=workdir)}")
  return max(steps)


def _default_extractor(config, options: EvalOptions, workdir: str) -> Callable:
  from stunet.eval import feature_net
  directory = options.feature_net_dir or os.path.join(os.path.abspath(workdir), "eval")
  settings = feature_net.TrainSettings(data_config=config.data.builder_config)
  return feature_net.load_or_train(directory, settings).extract


def _json_safe(value):
  """NaN (undefined metrics, e.g. no object found) becomes null: strict JSON."""
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, np.generic):
    return _json_safe(value.item())
  return value


def to_markdown(record: dict) -> str:
  """Summary tables of an `evaluate_run` record: all clips, then each subset."""
  lines = [f"# Evaluation: {record['dataset']} `{record['split']}` split, "
           f"{record['stage']} step {record['step']}", ""]
  lines.append(f"{record['summary']['num_clips']} of {record['num_split_examples']} "
               f"captions sampled (one clip each); samples: `{record['samples_dir']}`.")
  lines.append("")
  lines.append("## All sampled captions")
  lines.append("")
  lines.append(metrics_lib.metrics_to_markdown(record["summary"]))
  for name, title in (("held_out", "Held-out (colour, shape, motion) combinations"),
                      ("seen", "Combinations seen in training"),
                      (FAST_MOTION, "Fast motion: a quick or a bouncing object")):
    if name in record["subsets"]:
      lines += [f"## {title}", "", metrics_lib.metrics_to_markdown(record["subsets"][name])]
  return "\n".join(lines)
