"""Tests for `run_evaluation` (behind `experiments.evaluate`): split selection, outputs, errors.

The output tests sample a tiny run trained for two steps per stage (end to end, marked slow).
"""

import json
import os

import pytest

from stunet.eval import run_evaluation
from stunet.eval.run_evaluation import SplitExample


def _examples(held):
  return [SplitExample(f"caption {i}", h, i) for i, h in enumerate(held)]


def test_select_keeps_held_out_and_seen_in_split_order():
  examples = _examples([False] * 6 + [True] * 4)
  chosen = run_evaluation.select_examples(examples, 4)
  assert [e.index for e in chosen] == [0, 1, 6, 7]
  assert run_evaluation.select_examples(examples, 0) == examples
  assert run_evaluation.select_examples(examples, 50) == examples


def test_select_fills_from_the_other_kind():
  chosen = run_evaluation.select_examples(_examples([True] + [False] * 9), 5)
  assert sum(e.held_out for e in chosen) == 1 and len(chosen) == 5
  chosen = run_evaluation.select_examples(_examples([True] * 9 + [False]), 5)
  assert sum(e.held_out for e in chosen) == 4 and len(chosen) == 5


def test_fast_motion_captions_are_quick_or_bouncing():
  assert run_evaluation.is_fast_motion("a small red circle moving quickly to the left")
  assert run_evaluation.is_fast_motion("a small red circle bouncing slowly up and down")
  assert not run_evaluation.is_fast_motion("a small red circle moving slowly upwards")
  assert run_evaluation.is_fast_motion(
      "a small red circle moving slowly upwards and a small red circle moving fast to the left")


def test_options_name_the_bad_field():
  with pytest.raises(ValueError, match="split must be one of"):
    run_evaluation.EvalOptions(split="dev").validate()
  with pytest.raises(ValueError, match="max_prompts"):
    run_evaluation.EvalOptions(max_prompts=-1).validate()
  with pytest.raises(ValueError, match="checkpoint_step"):
    run_evaluation.EvalOptions(checkpoint_step=-2).validate()


def test_missing_run_names_the_train_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="experiments.train"):
    run_evaluation.evaluate_run(str(tmp_path / "nothing"))


@pytest.fixture(scope="module")
def record(tiny_run):
  workdir, mesh = tiny_run
  options = run_evaluation.EvalOptions(split="test", max_prompts=4, steps=2)
  return run_evaluation.evaluate_run(workdir, options, progress=False, mesh=mesh)


@pytest.mark.slow
def test_writes_metrics_json_markdown_and_samples(record, tiny_run):
  workdir, _ = tiny_run
  out = os.path.join(workdir, "eval", "test_step2")
  assert record["out_dir"] == out
  with open(os.path.join(out, "metrics.json")) as f:
    saved = json.load(f)  # strict JSON: NaN written as null
  assert saved["split"] == "test" and saved["step"] == 2
  assert saved["summary"]["num_clips"] == 4 == len(saved["per_clip"])
  # Every test clip holds a held-out combination (validation clips never do).
  assert all(c["held_out"] for c in saved["per_clip"])
  fast = [run_evaluation.is_fast_motion(c["prompt"]) for c in saved["per_clip"]]
  assert [c[run_evaluation.FAST_MOTION] for c in saved["per_clip"]] == fast
  assert set(saved["subsets"]) == {"held_out"} | ({run_evaluation.FAST_MOTION} if any(fast)
                                                  else set())
  if any(fast):
    assert saved["subsets"][run_evaluation.FAST_MOTION]["num_clips"] == sum(fast)
  assert set(saved["summary"]["accuracy"]) >= {"colour", "shape", "motion", "count"}
  assert saved["settings"]["steps"] == 2
  markdown = open(os.path.join(out, "metrics.md")).read()
  assert "| accuracy: colour |" in markdown and "Held-out" in markdown
  assert os.path.exists(os.path.join(out, "samples", "index.html"))
  assert len([n for n in os.listdir(os.path.join(out, "samples")) if n.endswith(".gif")]) == 4


@pytest.mark.slow
def test_user_feature_extractor_gives_a_frechet_distance(tiny_run):
  import numpy as np
  workdir, mesh = tiny_run

  def mean_colour(clips):  # a user hook: clips -> [n d] features
    return clips.reshape(len(clips), -1, 3).mean(1).astype(np.float64)

  options = run_evaluation.EvalOptions(split="validation", max_prompts=4, steps=2)
  out = run_evaluation.evaluate_run(workdir, options, feature_extractor=mean_colour,
                                    progress=False, mesh=mesh)
  assert np.isfinite(out["summary"]["fvd_shapes"]) and out["summary"]["fvd_shapes"] >= 0
  assert out["out_dir"].endswith("validation_step2")
  # Validation clips never hold a held-out combination; some move fast.
  assert set(out["subsets"]) - {run_evaluation.FAST_MOTION} == {"seen"}


@pytest.mark.slow
def test_checkpoint_step_evaluates_that_checkpoint(tiny_run, tmp_path):
  workdir, mesh = tiny_run
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 1 .*saved steps: \[2\]"):
    run_evaluation.evaluate_run(
        workdir, run_evaluation.EvalOptions(max_prompts=2, steps=2, checkpoint_step=1),
        progress=False, mesh=mesh, out_dir=str(tmp_path / "step1"))
  out = run_evaluation.evaluate_run(
      workdir, run_evaluation.EvalOptions(max_prompts=2, steps=2, checkpoint_step=2),
      progress=False, mesh=mesh, out_dir=str(tmp_path / "step2"))
  assert out["step"] == 2 and out["settings"]["checkpoint_step"] == 2
