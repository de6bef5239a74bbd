"""Tests for `learning_curve`: rows per checkpoint of both stages, times, tables, plot, errors.

The row tests sample the tiny run of `conftest.tiny_run` (two steps and one checkpoint per
stage, marked slow like the other end-to-end evaluation tests) with 2 captions and 2 denoising
steps; the time helpers are checked on hand-written metrics files.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from stunet.eval import learning_curve as lc

SAMPLING = dict(max_prompts=2, sample_steps=2)


def _final_elapsed(stage_dir: str) -> float:
  with open(os.path.join(stage_dir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(l) for l in f if l.strip()]
  return [r["elapsed_s"] for r in records if "elapsed_s" in r][-1]


@pytest.fixture(scope="module")
def rows(tiny_run, tmp_path_factory):
  """{stage: rows} of the tiny run's two stages."""
  workdir, mesh = tiny_run
  out = tmp_path_factory.mktemp("learning_curve")
  return {stage: lc.learning_curve(workdir, stage, mesh=mesh, out_dir=str(out / stage),
                                   **SAMPLING)
          for stage in ("t2i", "video")}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["t2i", "video"])
def test_one_row_per_checkpoint_with_scores_in_unit_range(rows, tiny_run, stage):
  workdir, _ = tiny_run
  assert lc.saved_steps(workdir, stage) == [2]
  (row,) = rows[stage]
  assert row["stage"] == stage and row["step"] == 2 and row["split"] == "validation"
  assert row["num_prompts"] == 2 and row["sample_steps"] == 2
  columns = lc.metric_columns(stage)
  assert ("motion" in columns) == ("speed" in columns) == (stage == "video")
  for key in columns:
    assert 0.0 <= row[key] <= 1.0, (key, row[key])
  # A new run logs its training time; the video stage started from the t2i stage's end.
  assert row["elapsed_s"] >= 0 and math.isfinite(row["elapsed_s"])
  assert row["elapsed_s"] == _final_elapsed(os.path.join(workdir, stage))
  before = 0.0 if stage == "t2i" else _final_elapsed(os.path.join(workdir, "t2i"))
  assert row["earlier_stages_s"] == before
  assert row["total_s"] == pytest.approx(row["elapsed_s"] + before)
  assert os.path.isfile(os.path.join(row["samples_dir"], "index.html"))


@pytest.mark.slow
def test_markdown_has_a_line_per_checkpoint(rows):
  video = lc.to_markdown(rows["video"], title="video")
  table = [l for l in video.splitlines() if l.startswith("| ")]
  assert len(table) == 1 + len(rows["video"])  # header + one per checkpoint
  assert "total train min" in table[0] and "| motion |" in table[0]
  assert table[1].startswith("| 2 | ")
  t2i = lc.to_markdown(rows["t2i"])
  assert "motion" not in t2i and "total train min" not in t2i  # nothing before t2i


@pytest.mark.slow
def test_plot_writes_a_png(rows, tmp_path):
  path = lc.plot(rows["video"], str(tmp_path / "plots" / "curve.png"))
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_without_elapsed_s_gets_nan_times(tiny_run, tmp_path):
  workdir, mesh = tiny_run
  copy = tmp_path / "old_run"
  for stage in ("t2i", "video"):
    shutil.copytree(os.path.join(workdir, stage), copy / stage,
                    ignore=shutil.ignore_patterns("sampled", "tensorboard"))
    path = copy / stage / "metrics.jsonl"
    records = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "elapsed_s"})
                            + "\n" for r in records))
  (row,) = lc.learning_curve(str(copy), "video", mesh=mesh, out_dir=str(tmp_path / "s"),
                             **SAMPLING)
  assert math.isnan(row["elapsed_s"]) and math.isnan(row["earlier_stages_s"])
  assert 0.0 <= row["colour"] <= 1.0
  assert "| 2 | n/a | n/a |" in lc.to_markdown([row])
  lc.plot([row], str(tmp_path / "by_step.png"))  # drawn against the step instead


def test_elapsed_at_takes_the_nearest_earlier_logged_record(tmp_path):
  lines = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9, "elapsed_s": 30.0},
           {"step": 3, "loss": 0.8}, {"step": 4, "loss": 0.7, "elapsed_s": 50.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
  records = lc.elapsed_records(str(tmp_path))
  assert records == [(2, 30.0), (4, 50.0)]
  assert lc.elapsed_at(records, 4) == 50.0
  assert lc.elapsed_at(records, 3) == 30.0
  assert math.isnan(lc.elapsed_at(records, 1))
  assert lc.elapsed_records(str(tmp_path / "missing")) == []


def test_earlier_stages_follow_init_from(tmp_path):
  def stage_dir(path, elapsed, init_from=None):
    os.makedirs(path)
    config = {"stage": {"video": {"init_from": init_from}}} if init_from is not None else {}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "elapsed_s": e}) + "\n" for s, e in elapsed))

  stage_dir(tmp_path / "a" / "t2i", [(10, 60.0), (20, 120.0)])
  stage_dir(tmp_path / "a" / "video", [(5, 7.0)])
  assert lc.earlier_stages_elapsed(str(tmp_path / "a"), "video") == 120.0
  assert lc.earlier_stages_elapsed(str(tmp_path / "a"), "t2i") == 0.0
  # From another run's t2i checkpoint at step 10: that run's time at step 10.
  stage_dir(tmp_path / "b" / "video", [(5, 7.0)],
            init_from=str(tmp_path / "a" / "t2i" / "checkpoints" / "10"))
  assert lc.earlier_stages_elapsed(str(tmp_path / "b"), "video") == 60.0
  # Imported public weights: not a run of ours, time unknown.
  os.makedirs(tmp_path / "imported")
  stage_dir(tmp_path / "c" / "video", [(5, 7.0)], init_from=str(tmp_path / "imported"))
  assert math.isnan(lc.earlier_stages_elapsed(str(tmp_path / "c"), "video"))


def test_markdown_and_plot_need_rows(tmp_path):
  with pytest.raises(ValueError, match="no rows"):
    lc.to_markdown([])
  with pytest.raises(ValueError, match="no rows"):
    lc.plot([], str(tmp_path / "empty.png"))


def test_unknown_and_unsupported_stages(tmp_path):
  with pytest.raises(ValueError, match=r"unknown stage 'vidoe'; registered: .*'video'"):
    lc.learning_curve(str(tmp_path), "vidoe")
  with pytest.raises(ValueError, match=r"stages \('t2i', 'video'\).*'ssr'"):
    lc.learning_curve(str(tmp_path), "ssr")


def test_untrained_stage_names_the_train_command(tmp_path):
  with pytest.raises(ValueError, match=r"'video' stage .* has no checkpoint.*experiments\.train"):
    lc.learning_curve(str(tmp_path / "nothing"), "video")


def test_missing_step_lists_the_saved_ones(tmp_path):
  for name in ("100", "200", "300.orbax-checkpoint-tmp-1"):
    os.makedirs(tmp_path / "t2i" / "checkpoints" / name)
  assert lc.saved_steps(str(tmp_path), "t2i") == [100, 200]
  with pytest.raises(ValueError, match=r"step\(s\) \[150\] .*saved steps: \[100, 200\]"):
    lc.learning_curve(str(tmp_path), "t2i", steps=[100, 150])


@pytest.mark.slow
def test_missing_step_of_the_tiny_run(tiny_run):
  workdir, mesh = tiny_run
  with pytest.raises(ValueError, match=r"saved steps: \[2\]"):
    lc.learning_curve(workdir, "video", steps=[1], mesh=mesh, **SAMPLING)
