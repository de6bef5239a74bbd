"""The quick-start main job: data, T2I, inflated STUNet, samples, metrics (SPEC §1-§3, §6).

`run_main_job(config, workdir)` is what README command 1 runs (`python -m experiments.main`):

1. builds the embedded `shapes_video` data if it is missing (`loop.ensure_data`);
2. trains the stages of `config.stages` (T2I U-Net, then the inflated STUNet's temporal
   layers) on the local devices (`stunet.train.loop.train`; progress bars);
3. samples the config's showcase prompts (`config.sample.prompts`) into a gallery;
4. samples `num_eval_prompts` captions of the test split (held-out combinations) and
   evaluates them with the detector metrics (`stunet.eval.run_evaluation`);
5. returns (and `experiments/main.py` prints) where the videos, contact sheets, XT slices and
   metrics are, with the metrics table.

Every piece resumes: training continues from its latest checkpoints, and samples or
metrics that exist for the final checkpoint are read back instead of recomputed, so a re-run
of a finished job only reports. The summary is also written to ``<workdir>/main_job.json``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import jax
import ml_collections

from stunet.sampling import sample_run
from stunet.sampling import trained_stage
from stunet.eval import run_evaluation
from stunet.train import loop

SUMMARY_NAME = "main_job.json"


@dataclasses.dataclass(frozen=True)
class MainJobOptions:
  """What the main job samples after training.

  Attributes:
    num_showcase_samples: clips per showcase prompt (`config.sample.prompts`).
    num_eval_prompts: test-split captions sampled for the metrics (0 = the whole split).
    seed: sampling seed.
  """
  num_showcase_samples: int = 2
  num_eval_prompts: int = 32
  seed: int = 0

  def validate(self) -> None:
    if not isinstance(self.num_showcase_samples, int) or self.num_showcase_samples < 0:
      raise ValueError(f"num_showcase_samples must be an integer >= 0, got "
                       f"{self.num_showcase_samples!r}")
    if not isinstance(self.num_eval_prompts, int) or self.num_eval_prompts < 0:
      raise ValueError(f"num_eval_prompts must be an integer >= 0 (0 = the whole test split), "
                       f"got {self.num_eval_prompts!r}")


def _stage_names(config) -> list[str]:
  return [s.strip() for s in str(config.stages).split(",") if s.strip()]


def _showcase(workdir: str, config, options: MainJobOptions, step: int,
              mesh: jax.sharding.Mesh) -> str | None:
  """Gallery of the showcase prompts at `step` (sampled unless it exists already)."""
  if not options.num_showcase_samples or not config.sample.prompts:
    return None
  out_dir = os.path.join(trained_stage.stage_dir(workdir, "video"), "sampled", str(step))
  gallery = os.path.join(out_dir, "index.html")
  expected = len(config.sample.prompts) * options.num_showcase_samples
  if os.path.exists(gallery) and len(glob.glob(os.path.join(out_dir, "*.json"))) >= expected:
    return gallery
  result = sample_run.sample_run(
      workdir, list(config.sample.prompts), stage="video", step=step, out_dir=out_dir, mesh=mesh,
      options=sample_run.SampleOptions(num_samples=options.num_showcase_samples,
                                       seed=options.seed))
  return result.gallery_path


def _evaluation(workdir: str, options: MainJobOptions, step: int,
                mesh: jax.sharding.Mesh) -> dict:
  """The test-split metrics record at `step` (computed unless `metrics.json` exists)."""
  out_dir = os.path.join(os.path.abspath(workdir), "eval", f"test_step{step}")
  path = os.path.join(out_dir, "metrics.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
    if record.get("summary", {}).get("num_clips") is not None:
      record["out_dir"] = out_dir
      return record
  eval_options = run_evaluation.EvalOptions(split="test", max_prompts=options.num_eval_prompts,
                                            seed=options.seed)
  return run_evaluation.evaluate_run(workdir, eval_options, out_dir=out_dir, mesh=mesh)


def run_main_job(config: ml_collections.ConfigDict, workdir: str,
                 options: MainJobOptions = MainJobOptions(), *,
                 mesh: jax.sharding.Mesh | None = None,
                 allow_config_change: bool = False) -> dict:
  """Trains, samples and evaluates (module docstring); returns the summary it writes.

  `allow_config_change` resumes checkpoints whose model/text/diffusion/data fields differ
  (see `stunet.train.compat`).
  """
  options.validate()
  if "video" not in _stage_names(config):
    raise ValueError(f"config.stages={config.stages!r}: the main job trains and samples the "
                     f"video model, so the stages must include 'video' (e.g. 't2i,video')")
  results = loop.train(config, workdir, mesh=mesh, allow_config_change=allow_config_change)
  if any(r.preempted for r in results) or len(results) < len(_stage_names(config)):
    return {"preempted": True, "workdir": os.path.abspath(workdir)}
  step = results[-1].step
  showcase = _showcase(workdir, config, options, step, mesh)
  record = _evaluation(workdir, options, step, mesh)
  eval_dir = record["out_dir"]
  summary = {
      "preempted": False,
      "workdir": os.path.abspath(workdir),
      "video_step": step,
      "stages": {r.stage: r.step for r in results},
      "showcase_gallery": showcase,
      "eval_gallery": os.path.join(eval_dir, "samples", "index.html"),
      "metrics_json": os.path.join(eval_dir, "metrics.json"),
      "metrics_markdown": os.path.join(eval_dir, "metrics.md"),
      "metrics": record["summary"],
      "metrics_held_out": record["subsets"].get("held_out"),
  }
  if jax.process_index() == 0:
    with open(os.path.join(os.path.abspath(workdir), SUMMARY_NAME), "w") as f:
      json.dump(run_evaluation._json_safe(summary), f, indent=1, sort_keys=True)
  return summary


def report(summary: dict) -> str:
  """Where everything is, and the headline metrics (what `experiments/main.py` prints)."""
  if summary["preempted"]:
    return (f"preempted: checkpoints are saved in {summary['workdir']}; run the same command "
            f"again to continue")
  m = summary["metrics"]
  acc = m["accuracy"]
  lines = [
      f"done: {summary['workdir']} (video stage step {summary['video_step']})",
      "videos (GIF; mp4 too with the video extra), contact sheets (*_sheet.png) and XT slices "
      "(*_xt.png) in:",
  ]
  if summary["showcase_gallery"]:
    lines.append(f"  showcase prompts: {summary['showcase_gallery']}")
  lines += [
      f"  test-split captions: {summary['eval_gallery']}",
      f"metrics: {summary['metrics_json']}",
      f"         {summary['metrics_markdown']}",
      f"test split ({m['num_clips']} clips, held-out colour/shape/motion combinations): "
      f"colour {_pct(acc['colour'])}, shape {_pct(acc['shape'])}, motion "
      f"{_pct(acc['motion'])}, speed {_pct(acc['speed'])}, object count "
      f"{_pct(acc['count'])}, all-correct {_pct(m['all_correct'])}, object present "
      f"{_pct(m['consistency']['presence'])} of frames",
  ]
  if "colour_presence" in m:  # lenient: the caption's colours on screen, whatever the shape
    lines.append(f"caption colours on screen in {_pct(m['colour_presence']['recall'])} of "
                 f"frames (other colours in {_pct(m['colour_presence']['spurious'])})")
  return "\n".join(lines)


def _pct(value) -> str:
  return "n/a" if value is None or value != value else f"{100 * value:.0f}%"
