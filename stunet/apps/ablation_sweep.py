"""The temporal down-sampling ablation sweep (SPEC §1, §6-§7; `experiments/ablate.py`).

The paper argues for down-sampling in time inside the U-Net but gives no quantitative ablation
of it (SPEC §6). A sweep is a config (`experiments/configs/ablation.py`): a base experiment
config and a list of variants, each a name, `{dotted.field: value}` overrides of it and
optionally a kind (`stunet.eval.ablation.VARIANT_KINDS`):

* ``video`` (the default): one STUNet, the video stage of the variant's config;
* ``keyframes_tsr``: the cascade Lumiere argues against (SPEC §1,
  `stunet.conditioning.keyframes_tsr`):
  a keyframe model (the video stage on every ``stage.tsr.keyframe_interval``-th frame) and a
  TSR model (stage ``tsr``) filling the frames between the keyframes. Its analysis numbers are
  the sums over both models (parameters, FLOPs of one train step of each, the two peak
  memories, the two step times; the row says so and keeps each model's own numbers); when
  training, the video-stage step budget is split between the two models
  (``sweep.keyframe_step_fraction`` to the keyframe model), at the same batch.

Per variant the sweep records, in ``<sweep workdir>``:

* ``analysis.jsonl``: per variant and clip length T, the parameter count and XLA's forward +
  backward FLOPs and peak memory of the compiled video train step (on the local CPU device,
  batch ``analysis_batch``), and the measured time of that compiled step (``step_time_repeats``
  runs on random weights; 0 = compile only);
* with ``train_steps > 0``: every variant's video stage trained for the same number of steps
  from one shared T2I checkpoint (same data, batch and seed), then `run_evaluation` on the test
  split, in ``<sweep workdir>/runs/<variant>/``; the quality row holds the metrics over all
  sampled captions and over the fast-motion ones (a quick or a bouncing object, where
  keyframes alias the motion), columns ``fast_*``;
* ``results.csv`` / ``results.md`` (analysis rows and a quality table), and the plots
  ``flops_vs_frames.png``, ``memory_vs_frames.png`` and ``quality.png``;
* ``sweep_config.json``: the sweep config that produced them.

Everything resumes: finished analysis rows are skipped, training continues from checkpoints,
existing metrics are read back. A variant whose factors do not divide T gets a row with the
reason instead of numbers.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import ml_collections

from stunet.conditioning import keyframes_tsr
from stunet.eval import ablation
from stunet.eval import ablation_report
from stunet.eval import run_evaluation
from stunet.sampling import options as sampling_options
from stunet.train import loop


class Sweep:
  """One sweep: its config, workdir and the rows recorded so far (see the module doc)."""

  def __init__(self, sweep: ml_collections.ConfigDict, workdir: str,
               log: Callable[[str], None] = print):
    self.sweep = sweep
    self.workdir = os.path.abspath(workdir)
    self.log = log
    names = [v[0] for v in sweep.variants]
    if len(set(names)) != len(names):
      raise ValueError(f"sweep.variants: repeated names in {names}")
    if not names:
      raise ValueError("sweep.variants is empty")
    self.configs = {v[0]: ablation.variant_config(sweep.base, dict(v[1])) for v in sweep.variants}
    self.kinds = {v[0]: ablation.variant_kind(v) for v in sweep.variants}
    for name, kind in self.kinds.items():
      if kind == "keyframes_tsr":
        keyframes_tsr.check_interval_value(self.configs[name].stage.tsr.keyframe_interval,
                                           f"variant {name!r}: {keyframes_tsr.INTERVAL_FIELD}")
    fraction = self.keyframe_step_fraction
    if not 0.0 < fraction < 1.0:
      raise ValueError(f"sweep.keyframe_step_fraction must be in (0, 1) (the keyframe model's "
                       f"share of a keyframes_tsr variant's steps), got {fraction!r}")
    os.makedirs(self.workdir, exist_ok=True)
    self.analysis_path = os.path.join(self.workdir, ablation_report.ANALYSIS_NAME)
    with open(os.path.join(self.workdir, "sweep_config.json"), "w") as f:
      f.write(sweep.to_json_best_effort(indent=2, sort_keys=True) + "\n")

  @property
  def keyframe_step_fraction(self) -> float:
    return float(self.sweep.get("keyframe_step_fraction", 0.5))

  def rows(self) -> list[dict]:
    return ablation_report.read_rows(self.analysis_path)

  def run_analysis(self) -> None:
    done = {ablation_report.row_key(r) for r in self.rows()}
    for name, config in self.configs.items():
      for frames in self.sweep.frames:
        if (name, "analysis", frames) in done:
          continue
        args = (config, int(frames), int(self.sweep.analysis_batch),
                int(self.sweep.step_time_repeats))
        if self.kinds[name] == "keyframes_tsr":
          self.log(f"[{name}] compiling the keyframe and TSR train steps at T={frames}")
          row = ablation.analyse_keyframes_tsr(*args)
        else:
          self.log(f"[{name}] compiling the train step at T={frames}")
          row = ablation.analyse(*args)
        ablation_report.append_row(self.analysis_path, {"variant": name, "kind": "analysis", **row})

  def run_training(self, train_steps: int, eval_prompts: int,
                   mesh: jax.sharding.Mesh | None = None) -> None:
    """Trains every variant for `train_steps` from one T2I run, then evaluates it.

    `mesh` (default: each run's `config.mesh` over all devices) is the one every stage trains
    and samples on.
    """
    t2i_dir = os.path.join(self.workdir, "runs", "t2i")
    base = ml_collections.ConfigDict(self.sweep.base.to_dict())
    base.stages = "t2i"
    self.log(f"[t2i] training the shared T2I U-Net in {t2i_dir}")
    loop.train(base, t2i_dir, mesh=mesh)
    done = {ablation_report.row_key(r) for r in self.rows()}
    for name, config in self.configs.items():
      if (name, "quality", None) in done:
        continue
      workdir = os.path.join(self.workdir, "runs", name)
      train = (self._train_keyframes_tsr if self.kinds[name] == "keyframes_tsr"
               else self._train_video)
      outcome = train(name, config, int(train_steps), os.path.join(t2i_dir, "t2i"), workdir,
                      mesh)
      if outcome is None:  # preempted
        return
      if "error" in outcome:
        ablation_report.append_row(self.analysis_path,
                                   {"variant": name, "kind": "quality", **outcome})
        continue
      self._evaluate(name, workdir, int(train_steps), int(eval_prompts), mesh, **outcome)

  def _train_video(self, name: str, config, train_steps: int, t2i: str, workdir: str,
                   mesh: jax.sharding.Mesh | None) -> dict | None:
    """The variant's video stage; `{'error': ...}`, `{}` when trained, None when preempted."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.stages = "video"
    c.stage.video.num_steps = train_steps
    c.stage.video.init_from = t2i
    c.log.num_samples = 0
    error = ablation.frames_error(c, int(c.data.frames))
    if error:
      return {"error": error}
    self.log(f"[{name}] training the video stage for {train_steps} steps in {workdir}")
    return None if loop.train(c, workdir, mesh=mesh)[-1].preempted else {}

  def _train_keyframes_tsr(self, name: str, config, train_steps: int, t2i: str, workdir: str,
                           mesh: jax.sharding.Mesh | None) -> dict | None:
    """The keyframe model (stage video) and the TSR model (stage tsr) in one workdir, the
    step budget split by `keyframe_step_fraction`, both at the video stage's batch."""
    keyframe_steps = int(round(train_steps * self.keyframe_step_fraction))
    tsr_steps = train_steps - keyframe_steps
    if keyframe_steps < 1 or tsr_steps < 1:
      return {"error": f"train_steps={train_steps} leaves no step for one of the keyframe and "
                       f"TSR models (keyframe_step_fraction={self.keyframe_step_fraction})"}
    c = ml_collections.ConfigDict(config.to_dict())
    c.log.num_samples = 0
    try:
      keyframes = keyframes_tsr.keyframe_config(c)
    except ValueError as e:
      return {"error": str(e)}
    error = ablation.frames_error(c, int(c.data.frames))
    if error:
      return {"error": f"tsr model: {error}"}
    keyframes.stages = "video"
    keyframes.stage.video.num_steps = keyframe_steps
    keyframes.stage.video.init_from = t2i
    tsr = ml_collections.ConfigDict(c.to_dict())
    tsr.stages = "tsr"
    # The same optimiser settings and batch as the video stage of the other variants.
    tsr.stage.tsr.update(dict(num_steps=tsr_steps, init_from=t2i,
                              global_batch_size=c.stage.video.global_batch_size,
                              learning_rate=c.stage.video.learning_rate))
    for stage, stage_config, steps in (("keyframe (video)", keyframes, keyframe_steps),
                                       ("tsr", tsr, tsr_steps)):
      self.log(f"[{name}] training the {stage} stage for {steps} steps in {workdir}")
      if loop.train(stage_config, workdir, mesh=mesh)[-1].preempted:
        return None
    return {"tsr": sampling_options.TSROptions(workdir=workdir),
            "extra": {"keyframe_steps": keyframe_steps, "tsr_steps": tsr_steps,
                      "keyframe_interval": int(c.stage.tsr.keyframe_interval)}}

  def _evaluate(self, name: str, workdir: str, train_steps: int, eval_prompts: int,
                mesh: jax.sharding.Mesh | None, tsr=None, extra: dict | None = None) -> None:
    record = run_evaluation.evaluate_run(
        workdir, run_evaluation.EvalOptions(split="test", max_prompts=eval_prompts), mesh=mesh,
        tsr=tsr)
    row = {"variant": name, "kind": "quality", "error": "", "train_steps": train_steps,
           "metrics_json": os.path.join(record["out_dir"], "metrics.json"),
           **ablation_report.quality_numbers(record["summary"]), **(extra or {})}
    fast = record["subsets"].get(run_evaluation.FAST_MOTION)
    if fast is not None:
      row.update({f"fast_{k}": v for k, v in ablation_report.quality_numbers(fast).items()})
    ablation_report.append_row(self.analysis_path, row)

  def write_outputs(self) -> dict[str, str]:
    return ablation_report.write_outputs(self.rows(), self.workdir,
                                         [v[0] for v in self.sweep.variants])
