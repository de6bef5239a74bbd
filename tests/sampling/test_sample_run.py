"""Sampling from a trained run: outputs, determinism, progress and the errors users meet."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from stunet.sampling import sample_run
from stunet.sampling import trained_stage
from stunet.text import byte_tokenizer
from stunet.train import compat
from tests.train.conftest import data_dir  # noqa: F401  (session fixture)
from tests.train.conftest import copy_of_small_run
from tests.train.conftest import small_run  # noqa: F401  (session fixture)
from tests.train.conftest import small_run_config

STEPS = 3


def _config(data_dir):  # noqa: F811
  return small_run_config(data_dir)


@pytest.fixture(scope="module")
def workdir(small_run, tmp_path_factory):  # noqa: F811
  """The session's 2-step t2i + 2-step video run (`tests/train/conftest.small_run`, trained
  on one device), copied; the tests sample it on all eight."""
  return copy_of_small_run(small_run, tmp_path_factory)


@pytest.fixture(scope="module")
def sampled(workdir, tmp_path_factory):
  steps = []
  out = str(tmp_path_factory.mktemp("sampled"))
  options = sample_run.SampleOptions(num_samples=2, seed=3, steps=STEPS, sampler="ddpm")
  result = sample_run.sample_run(workdir, ["a red circle moves left", "a blue square"],
                                 options=options, out_dir=out, progress=False,
                                 on_step=steps.append)
  return result, steps


@pytest.mark.slow
def test_writes_every_sample_and_the_gallery(sampled):
  result, steps = sampled
  assert steps == list(range(1, STEPS + 1))  # progress callback once per denoising step
  assert result.step == 2 and result.pixels.shape == (4, 8, 8, 8, 3)
  assert [e.name for e in result.entries] == ["p000_s00", "p000_s01", "p001_s00", "p001_s01"]
  record = json.load(open(os.path.join(result.out_dir, "p001_s01.json")))
  assert record["prompt"] == "a blue square" and record["seed"] == 3
  assert record["settings"]["sampler"] == "ddpm" and record["settings"]["steps"] == STEPS
  assert record["settings"]["params"] == "ema"
  for name in ("p001_s01.gif", "p001_s01_sheet.png", "p001_s01_xt.png"):
    assert os.path.getsize(os.path.join(result.out_dir, name)) > 0
  xt = np.asarray(Image.open(os.path.join(result.out_dir, "p001_s01_xt.png")))
  assert xt.shape[:2] == (8, 8)  # one image row per frame
  page = open(result.gallery_path, encoding="utf-8").read()
  assert all(f'src="{e.gif}"' in page for e in result.entries)
  # Different noise per clip of the same prompt.
  assert not np.array_equal(result.pixels[0], result.pixels[1])


@pytest.mark.slow
def test_command_line_run_reproduces_the_pixels(workdir, sampled, tmp_path):
  result, _ = sampled
  out = str(tmp_path / "cli")
  cmd = [sys.executable, "-m", "experiments.sample", f"--workdir={workdir}",
         "--prompt=a red circle moves left", "--prompt=a blue square", "--num_samples=2",
         "--seed=3", f"--steps={STEPS}", "--sampler=ddpm", f"--out={out}"]
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "PYTHONPATH": root})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "4 samples from step 2" in proc.stdout
  for e in result.entries:
    ours = np.asarray(Image.open(os.path.join(result.out_dir, e.contact_sheet)))
    theirs = np.asarray(Image.open(os.path.join(out, e.contact_sheet)))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_config_override_that_differs_from_the_checkpoint_is_refused(workdir, data_dir):  # noqa: F811
  config = _config(data_dir)
  config.model.channels = 8
  with pytest.raises(compat.ConfigMismatchError, match="model.channels: 16 -> 8"):
    sample_run.sample_run(workdir, ["x"], config=config, progress=False)


def test_no_checkpoint_names_the_path_and_the_training_command(tmp_path):
  os.makedirs(tmp_path / "video")
  with pytest.raises(FileNotFoundError) as e:
    sample_run.sample_run(str(tmp_path), ["a prompt"], progress=False)
  message = str(e.value)
  assert str(tmp_path / "video") in message and "python -m experiments.train" in message


def test_no_checkpoint_with_a_config_but_no_steps(tmp_path, data_dir):  # noqa: F811
  (tmp_path / "video").mkdir()
  config = _config(data_dir)
  config.stages = "t2i,video"
  (tmp_path / "video" / "config.json").write_text(config.to_json())
  with pytest.raises(FileNotFoundError,
                     match=r"no checkpoint in .*video/checkpoints; train the 'video' stage"):
    sample_run.sample_run(str(tmp_path), ["a prompt"], progress=False)


def test_unknown_stage(tmp_path):
  with pytest.raises(ValueError, match="unknown stage 'no_such_stage'"):
    sample_run.sample_run(str(tmp_path), ["a prompt"], stage="no_such_stage", progress=False)
  with pytest.raises(ValueError, match="upsamples base samples: pass its workdir as"):
    sample_run.sample_run(str(tmp_path), ["a prompt"], stage="ssr", progress=False)


@pytest.mark.parametrize("prompts", [[""], ["fine", "   "]])
def test_empty_prompt(prompts):
  with pytest.raises(ValueError, match="is empty"):
    sample_run.read_prompts(prompts)


def test_prompts_file(tmp_path):
  path = tmp_path / "prompts.txt"
  path.write_text("first prompt\n\n  second prompt  \n")
  assert sample_run.read_prompts(["cli"], str(path)) == ["cli", "first prompt", "second prompt"]
  with pytest.raises(ValueError, match="cannot read the prompts file .*missing.txt"):
    sample_run.read_prompts([], str(tmp_path / "missing.txt"))
  (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
  with pytest.raises(ValueError, match="cannot read the prompts file"):
    sample_run.read_prompts([], str(tmp_path / "binary.txt"))
  (tmp_path / "blank.txt").write_text("\n  \n")
  with pytest.raises(ValueError, match="has no prompts"):
    sample_run.read_prompts([], str(tmp_path / "blank.txt"))
  with pytest.raises(ValueError, match="no prompts"):
    sample_run.read_prompts([], None)


def test_truncated_prompts_are_found():
  tokenizer = byte_tokenizer.ByteTokenizer(8, on_truncation="silent")
  assert trained_stage.truncated_prompts(tokenizer, ["short", "much too long", "1234567"]) == [1]


@pytest.mark.slow
def test_over_long_prompt_is_truncated_with_a_warning(workdir, tmp_path):
  long_prompt = "a red circle " * 10  # > text.max_length = 32 bytes
  options = sample_run.SampleOptions(steps=1)
  with pytest.warns(UserWarning, match="prompt 1 is longer than text.max_length=32"):
    result = sample_run.sample_run(workdir, [long_prompt], options=options,
                                   out_dir=str(tmp_path), progress=False)
  assert len(result.entries) == 1


def test_bad_options():
  with pytest.raises(ValueError, match="sampler must be one of"):
    sample_run.SampleOptions(sampler="euler").validate()
  with pytest.raises(ValueError, match="params must be one of"):
    sample_run.SampleOptions(params="best").validate()
  with pytest.raises(ValueError, match="num_samples must be a positive integer"):
    sample_run.SampleOptions(num_samples=0).validate()


def test_run_config_from_before_a_new_field_takes_its_default(tmp_path):
  """A run written before a config field existed loads with that field's default (the
  behaviour it was trained with), keeping every value it saved."""
  from stunet import config as config_lib
  saved = config_lib.default_config("tiny").to_dict()
  del saved["diffusion"]["frame_noise_correlation"]
  del saved["optim"]["ema_warmup"]
  saved["diffusion"]["guidance"] = 2.5
  saved["data"]["frames"] = 4
  os.makedirs(tmp_path / "video")
  with open(tmp_path / "video" / "config.json", "w") as f:
    json.dump(saved, f)
  config = trained_stage.load_run_config(str(tmp_path), "video")
  assert config.diffusion.frame_noise_correlation == 0.0
  assert config.optim.ema_warmup is True
  assert config.diffusion.guidance == 2.5 and config.data.frames == 4
  assert config.data.builder_config == "tiny"
  assert config.model.channel_mult == tuple(saved["model"]["channel_mult"])
