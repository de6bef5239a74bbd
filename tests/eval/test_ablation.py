"""Tests for the ablation harness: analysis-only table and plots on tiny, resume, errors."""

import csv
import os

import pytest

from experiments.configs import ablation as ablation_config
from stunet.eval import ablation
from tests.eval.conftest import MODEL_OVERRIDES

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
  runner = ablation.Sweep(_sweep(), workdir, log=logged.append)
  runner.run_analysis()
  return workdir, runner, runner.write_outputs(), logged


def _row(rows, variant, frames):
  return next(r for r in rows if r["variant"] == variant and r["kind"] == "analysis"
              and r["frames"] == frames)


def test_variants_follow_the_number_of_downsamplers():
  names = [n for n, _ in ablation_config.variants(ablation_config.get_config("tiny").base)]
  assert names == ["stunet", "no_temporal_downsampling", "x2_every_level", "x4_bottleneck",
                   "no_temporal_attention"]  # tiny has two down-samplers: no "coarsest two"
  base = ablation_config.get_config("tiny").base
  base.model.channel_mult = (1, 2, 2, 2)
  overrides = dict(ablation_config.variants(base))
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
  overrides = dict(dict(ablation_config.variants(sweep.base))["x4_bottleneck"])
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
  rows_path = os.path.join(workdir, ablation.ANALYSIS_NAME)
  lines = open(rows_path).read().splitlines()
  # An interrupted run: the last row is cut mid-write.
  with open(rows_path, "w") as f:
    f.write("\n".join(lines[:-1]) + "\n" + lines[-1][:10])
  logged = []
  again = ablation.Sweep(_sweep(), workdir, log=logged.append)
  again.run_analysis()
  assert len(logged) == 1  # only the lost row is recomputed
  assert len(again.rows()) == len(lines)


def test_bad_override_names_the_field(tmp_path):
  sweep = _sweep()
  sweep.variants = (("bad", (("model.temporal_factorz", (1,)),)),)
  with pytest.raises(ValueError, match="temporal_factorz"):
    ablation.Sweep(sweep, str(tmp_path))


@pytest.mark.slow
def test_training_mode_evaluates_each_variant_once(tmp_path):
  sweep = _sweep()
  sweep.variants = sweep.variants[:1]
  sweep.frames = (4,)
  sweep.base.data.data_dir = str(tmp_path / "data")
  sweep.base.stage.t2i.num_steps = 1
  sweep.base.ckpt.every_steps = 1
  sweep.base.diffusion.sample_steps = 1
  sweep.base.log.update(dict(num_samples=0, progress_bar=False, tensorboard=False))
  logged = []
  runner = ablation.Sweep(sweep, str(tmp_path / "sweep"), log=logged.append)
  runner.run_training(train_steps=1, eval_prompts=2)
  quality = [r for r in runner.rows() if r["kind"] == "quality"]
  assert len(quality) == 1 and quality[0]["num_clips"] == 2 and quality[0]["train_steps"] == 1
  assert os.path.exists(quality[0]["metrics_json"])
  paths = runner.write_outputs()
  assert os.path.exists(paths["quality_plot"])
  assert "| stunet | 1 | 2 |" in open(paths["markdown"]).read()
  logged.clear()
  runner.run_training(train_steps=1, eval_prompts=2)  # resumed: the variant is done
  assert len(logged) == 1 and "[t2i]" in logged[0]
  assert len([r for r in runner.rows() if r["kind"] == "quality"]) == 1
