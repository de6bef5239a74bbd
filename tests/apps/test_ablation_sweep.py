"""Tests for the ablation sweep: analysis-only table and plots on tiny, resume, errors, and the
training mode."""

import csv
import json
import os

import jax
import pytest

from experiments.configs import ablation as ablation_config
from stunet.apps import ablation_sweep
from stunet.eval import ablation
from stunet.eval import ablation_report
from stunet.parallel import mesh as mesh_lib
from tests.train.conftest import MODEL_OVERRIDES
from tests.train.conftest import data_dir  # noqa: F401  (session fixture: shapes_video/tiny)

VARIANTS = ("stunet", "no_temporal_downsampling")


def _sweep():
  sweep = ablation_config.get_config("tiny")
  sweep.base.model.update(MODEL_OVERRIDES)  # two levels: one temporal down-sampler
  sweep.variants = tuple(v for v in ablation_config.variants(sweep.base) if v[0] in VARIANTS)
  sweep.frames = (4, 8)
  sweep.step_time_repeats = 1
  return sweep


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sweep"))
  logged = []
  runner = ablation_sweep.Sweep(_sweep(), workdir, log=logged.append)
  runner.run_analysis()
  return workdir, runner, runner.write_outputs(), logged


def _row(rows, variant, frames):
  return next(r for r in rows if r["variant"] == variant and r["kind"] == "analysis"
              and r["frames"] == frames)


def test_variants_follow_the_number_of_downsamplers():
  names = [v[0] for v in ablation_config.variants(ablation_config.get_config("tiny").base)]
  assert names == ["stunet", "no_temporal_downsampling", "x2_every_level", "x4_bottleneck",
                   "no_temporal_attention", "keyframes_tsr"]  # two down-samplers: no "coarsest two"
  assert [ablation.variant_kind(v) for v in ablation_config.variants(
      ablation_config.get_config("tiny").base)][-2:] == ["video", "keyframes_tsr"]
  base = ablation_config.get_config("tiny").base
  base.model.channel_mult = (1, 2, 2, 2)
  overrides = {v[0]: v[1] for v in ablation_config.variants(base)}
  assert dict(overrides["x2_coarsest_two"]) == {"model.temporal_factors": (1, 2, 2)}


def test_analysis_numbers(finished):
  _, runner, _, logged = finished
  rows = runner.rows()
  stunet, flat = _row(rows, "stunet", 4), _row(rows, "no_temporal_downsampling", 4)
  assert stunet["train_step_flops"] > 0 and stunet["peak_memory_bytes"] > 0
  # Down-sampling in time saves compute and memory in the coarse levels.
  assert flat["train_step_flops"] > stunet["train_step_flops"]
  assert flat["peak_memory_bytes"] > stunet["peak_memory_bytes"]
  assert _row(rows, "no_temporal_downsampling", 8)["train_step_flops"] > flat["train_step_flops"]
  assert all(r["step_seconds"] > 0 for r in rows)
  assert len(logged) == len(VARIANTS) * 2  # one compile per variant and T


def test_indivisible_frames_give_a_reason_not_a_crash():
  sweep = _sweep()
  overrides = {v[0]: dict(v[1]) for v in ablation_config.variants(sweep.base)}["x4_bottleneck"]
  row = ablation.analyse(ablation.variant_config(sweep.base, overrides), 6)
  assert "divisible" in row["error"] and "temporal_factors" in row["error"]


def test_outputs(finished):
  workdir, _, paths, _ = finished
  for name in ("csv", "markdown", "flops_plot", "memory_plot"):
    assert os.path.getsize(paths[name]) > 0, name
  assert os.path.exists(os.path.join(workdir, "sweep_config.json"))
  with open(paths["csv"]) as f:
    table = list(csv.DictReader(f))
  assert len(table) == len(VARIANTS) * 2
  assert all(r["step_seconds"] for r in table)
  markdown = open(paths["markdown"]).read()
  assert "| no_temporal_downsampling | 4 | 1 |" in markdown and "seconds / step" in markdown


def test_resume_skips_finished_rows(finished):
  workdir, runner, _, _ = finished
  rows_path = os.path.join(workdir, ablation_report.ANALYSIS_NAME)
  lines = open(rows_path).read().splitlines()
  # An interrupted run: the last row is cut mid-write.
  with open(rows_path, "w") as f:
    f.write("\n".join(lines[:-1]) + "\n" + lines[-1][:10])
  logged = []
  again = ablation_sweep.Sweep(_sweep(), workdir, log=logged.append)
  again.run_analysis()
  assert len(logged) == 1  # only the lost row is recomputed
  assert len(again.rows()) == len(lines)


def test_bad_override_names_the_field(tmp_path):
  sweep = _sweep()
  sweep.variants = (("bad", (("model.temporal_factorz", (1,)),)),)
  with pytest.raises(ValueError, match="temporal_factorz"):
    ablation_sweep.Sweep(sweep, str(tmp_path))


@pytest.fixture(scope="module")
def keyframes_sweep(tmp_path_factory):
  """An analysis-only sweep of the keyframes + TSR cascade at T=4 (k=2)."""
  sweep = _sweep()
  sweep.variants = tuple(v for v in ablation_config.variants(sweep.base)
                         if v[0] == "keyframes_tsr")
  sweep.frames = (4,)
  workdir = str(tmp_path_factory.mktemp("keyframes_sweep"))
  logged = []
  runner = ablation_sweep.Sweep(sweep, workdir, log=logged.append)
  runner.run_analysis()
  return runner, runner.write_outputs(), logged


def test_keyframes_tsr_analysis_row_sums_both_models(keyframes_sweep, finished):
  runner, paths, logged = keyframes_sweep
  row, stunet = _row(runner.rows(), "keyframes_tsr", 4), _row(finished[1].rows(), "stunet", 4)
  assert row["error"] == "" and row["models"] == "keyframes+tsr"
  assert (row["keyframe_interval"], row["keyframe_frames"]) == (2, 2)
  assert row["keyframe_temporal_factors"] == [2]  # 2 keyframes still divide by the x2
  for key in ("params_total", "train_step_flops", "peak_memory_bytes", "step_seconds"):
    assert row[key] == row[f"keyframes_{key}"] + row[f"tsr_{key}"] > 0, key
  # The keyframe model is the STUNet on half the frames; the TSR model the STUNet at T with 4
  # more input channels: both cost less than / about the same as the STUNet at T.
  assert row["keyframes_params_total"] == stunet["params_total"]
  assert row["tsr_params_total"] > stunet["params_total"]
  assert row["keyframes_train_step_flops"] < stunet["train_step_flops"]
  assert row["tsr_train_step_flops"] > stunet["train_step_flops"]
  assert logged == ["[keyframes_tsr] compiling the keyframe and TSR train steps at T=4"]
  markdown = open(paths["markdown"]).read()
  assert ("| keyframes_tsr | 4 | 1 |" in markdown
          and "sum of the keyframe model (T/k = 2 frames) and the TSR model (T = 4)" in markdown)
  with open(paths["csv"]) as f:
    assert [r["models"] for r in csv.DictReader(f)] == ["keyframes+tsr"]


def test_keyframes_tsr_bad_interval_gives_a_reason_or_fails_early(tmp_path):
  sweep = _sweep()
  config = ablation.variant_config(sweep.base, {"stage.tsr.keyframe_interval": 4})
  row = ablation.analyse_keyframes_tsr(config, 6)
  assert "stage.tsr.keyframe_interval=4 must divide data.frames=6" in row["error"]
  config.stage.tsr.keyframe_interval = 5  # one keyframe fits, but the TSR model's x2 does not
  config.data.fps = 15
  row = ablation.analyse_keyframes_tsr(config, 5)
  assert row["error"].startswith("tsr model: Number of frames 5 is not divisible")
  sweep.variants = (("kf", (("stage.tsr.keyframe_interval", 1),), "keyframes_tsr"),)
  with pytest.raises(ValueError, match="variant 'kf': stage.tsr.keyframe_interval must be"):
    ablation_sweep.Sweep(sweep, str(tmp_path))
  sweep.variants = (("kf", (), "cascade"),)
  with pytest.raises(ValueError, match="kind 'cascade'"):
    ablation_sweep.Sweep(sweep, str(tmp_path))
  sweep.variants = (("kf", (), "keyframes_tsr"),)
  sweep.keyframe_step_fraction = 1.0
  with pytest.raises(ValueError, match="sweep.keyframe_step_fraction"):
    ablation_sweep.Sweep(sweep, str(tmp_path))


@pytest.mark.slow
def test_training_mode_evaluates_each_variant_once(tmp_path, data_dir):  # noqa: F811
  """STUNet and the keyframes + TSR cascade at the same 2-step budget, evaluated, resumed."""
  from stunet.eval import run_evaluation
  sweep = _sweep()
  sweep.variants = tuple(v for v in ablation_config.variants(sweep.base)
                         if v[0] in ("stunet", "keyframes_tsr"))
  sweep.frames = (4,)
  sweep.base.data.data_dir = data_dir  # the session's shapes_video/tiny
  sweep.base.stage.t2i.num_steps = 1
  sweep.base.ckpt.every_steps = 1
  sweep.base.diffusion.sample_steps = 1
  sweep.base.log.update(dict(num_samples=0, progress_bar=False, tensorboard=False))
  logged = []
  runner = ablation_sweep.Sweep(sweep, str(tmp_path / "sweep"), log=logged.append)
  # One device: compiling for all eight costs more than these 2-step runs.
  mesh = mesh_lib.make_mesh(sweep.base.mesh, devices=jax.devices()[:1])
  runner.run_training(train_steps=2, eval_prompts=2, mesh=mesh)
  quality = {r["variant"]: r for r in runner.rows() if r["kind"] == "quality"}
  assert set(quality) == {"stunet", "keyframes_tsr"}
  for q in quality.values():
    assert q["error"] == "" and q["num_clips"] == 2 and q["train_steps"] == 2
    saved = json.load(open(q["metrics_json"]))
    fast = sum(run_evaluation.is_fast_motion(c["prompt"]) for c in saved["per_clip"])
    assert q.get("fast_num_clips", 0) == fast
  cascade = quality["keyframes_tsr"]
  assert (cascade["keyframe_steps"], cascade["tsr_steps"], cascade["keyframe_interval"]) == (
      1, 1, 2)
  saved = json.load(open(cascade["metrics_json"]))
  assert saved["settings"]["tsr_keyframe_interval"] == 2 and saved["summary"]["fps"] == 16
  run = os.path.join(str(tmp_path / "sweep"), "runs", "keyframes_tsr")
  assert json.load(open(os.path.join(run, "video", "config.json")))["data"]["frames"] == 4
  assert json.load(open(os.path.join(run, "tsr", "config.json")))["data"]["frames"] == 8
  sample = os.path.join(saved["samples_dir"], "p000_s00.json")
  assert json.load(open(sample))["settings"]["tsr_step"] == 1
  paths = runner.write_outputs()
  assert os.path.exists(paths["quality_plot"])
  markdown = open(paths["markdown"]).read()
  assert "| stunet | 2 | 2 |" in markdown and "| keyframes_tsr | 2 | 2 |" in markdown
  assert "fast-motion captions only" in markdown

  logged.clear()
  runner.run_training(train_steps=2, eval_prompts=2, mesh=mesh)  # resumed: both variants are done
  assert len(logged) == 1 and "[t2i]" in logged[0]
  for stage in ("video", "tsr"):  # a re-run neither retrains nor continues the cascade
    assert sorted(os.listdir(os.path.join(run, stage, "checkpoints"))) == ["1"]
