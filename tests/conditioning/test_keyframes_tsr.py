"""The keyframes + TSR cascade baseline: keyframe layout, the keyframe model's config, errors,
and sampling through a (random-weight) TSR model with the keyframes pasted (SPEC §1)."""

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from stunet.conditioning import keyframes_tsr
from stunet.parallel import mesh as mesh_lib
from stunet.train import build
from stunet.train import samples as samples_lib
from stunet.train import stages
from tests.nn.unet_testing import randomize

TWO_LEVELS = dict(channel_mult=(1, 2), num_res_blocks=(1, 1), attention_levels=(False, True),
                  num_heads=(2, 2), temporal_factors=(2,))


def _config(**model):
  c = tiny.get_config()
  c.model.update(model or TWO_LEVELS)
  c.mesh.shape = (1, 1, 1)
  c.text.on_truncation = "silent"
  return c


def test_place_keyframes_layout():
  keyframes = np.random.default_rng(0).uniform(-1, 1, (2, 3, 4, 4, 3)).astype(np.float32)
  cond, mask = keyframes_tsr.place_keyframes(keyframes, 4)
  assert cond.shape == (2, 12, 4, 4, 3) and mask.shape == (2, 12, 4, 4, 1)
  np.testing.assert_array_equal(cond[:, [0, 4, 8]], keyframes)
  np.testing.assert_array_equal(np.delete(cond, [0, 4, 8], axis=1), 0.0)
  np.testing.assert_array_equal(mask[0, :, 0, 0, 0], [1, 0, 0, 0] * 3)
  # The training layout of the same clip agrees with the sampling layout.
  full = np.zeros((2, 12, 4, 4, 3), np.float32)
  full[:, ::4] = keyframes
  full[:, 1::4] = 0.5  # frames between keyframes never reach the condition
  train_cond, train_mask = keyframes_tsr.keyframe_condition(full, 4)
  np.testing.assert_array_equal(train_cond, cond)
  np.testing.assert_array_equal(train_mask, mask)
  channels = keyframes_tsr.model_channels(cond, mask)
  assert channels.shape == (2, 12, 4, 4, 4)


@pytest.mark.parametrize("interval,frames,message", [
    (1, 8, "must be an integer >= 2"),
    (2.0, 8, "must be an integer >= 2"),
    (3, 8, r"stage.tsr.keyframe_interval=3 must divide data.frames=8.*\[2, 4, 8\]"),
    (2, None, "data.frames must be set"),
])
def test_bad_interval_names_the_field(interval, frames, message):
  with pytest.raises(ValueError, match=message):
    keyframes_tsr.check_interval(interval, frames)


def test_reduce_temporal_factors_keeps_what_divides():
  assert keyframes_tsr.reduce_temporal_factors((2, 2), 4) == (2, 2)
  assert keyframes_tsr.reduce_temporal_factors((2, 2), 2) == (2, 1)
  assert keyframes_tsr.reduce_temporal_factors((2, 4), 6) == (2, 1)
  assert keyframes_tsr.reduce_temporal_factors((2, 2, 2), 1) == (1, 1, 1)


def test_keyframe_config():
  c = _config(temporal_factors=(2, 2), channel_mult=(1, 2, 2), num_res_blocks=(1, 1, 1),
              attention_levels=(False, True, True), num_heads=(2, 2, 2))
  c.stage.tsr.keyframe_interval = 4
  k = keyframes_tsr.keyframe_config(c)
  assert (k.data.frames, k.data.fps, k.sample.fps) == (2, 4, 2)
  assert tuple(k.model.temporal_factors) == (2, 1)  # 2 keyframes: one x2 down-sampler left
  assert (c.data.frames, c.data.fps) == (8, 16)  # the full config is not modified
  c.stage.tsr.keyframe_interval = 2
  assert keyframes_tsr.keyframe_config(c).data.frames == 4
  c.data.fps = 6
  c.stage.tsr.keyframe_interval = 4
  with pytest.raises(ValueError, match="stage.tsr.keyframe_interval=4 must divide data.fps=6"):
    keyframes_tsr.keyframe_config(c)


@pytest.fixture(scope="module")
def tsr_sampler():
  setup = build.build_stage(_config(), stages.get_stage("tsr"))
  mesh = mesh_lib.make_mesh(setup.config.mesh, jax.devices()[:1])
  params = randomize(jax.eval_shape(setup.init_params, jax.random.key(0)), scale=0.1)
  return samples_lib.Sampler(setup, mesh, steps=2), params


def test_fill_between_keyframes_pastes_the_keyframes(tsr_sampler):
  sampler, params = tsr_sampler
  keyframes = np.random.default_rng(1).uniform(-1, 1, (2, 4, 16, 16, 3)).astype(np.float32)
  prompts = ["a red circle moving quickly to the left", "a blue square bouncing"]
  key = jax.random.key(3)
  clips = keyframes_tsr.fill_between_keyframes(sampler, params, prompts, keyframes, key, 2)
  assert clips.shape == (2, 8, 16, 16, 3)
  np.testing.assert_array_equal(clips[:, [0, 2, 4, 6]], keyframes)  # exact: pasted
  assert np.all(np.isfinite(clips)) and np.abs(clips[:, 1::2]).max() <= 1.0
  raw = keyframes_tsr.fill_between_keyframes(sampler, params, prompts, keyframes, key, 2,
                                             paste_keyframes=False)
  np.testing.assert_array_equal(raw[:, 1::2], clips[:, 1::2])  # same sample in between
  assert np.abs(raw[:, ::2] - keyframes).max() > 1e-3  # random weights do not copy them
  with pytest.raises(ValueError, match=r"the TSR model makes clips of shape \(8, 16, 16, 3\)"):
    keyframes_tsr.fill_between_keyframes(sampler, params, prompts, keyframes[:, :2], key, 2)
  with pytest.raises(ValueError, match="2 prompts for 1 keyframe clips"):
    keyframes_tsr.fill_between_keyframes(sampler, params, prompts, keyframes[:1], key, 2)


def test_keyframes_config_file_derives_from_its_base():
  from experiments.configs import keyframes
  c = keyframes.get_config("tiny")
  base = tiny.get_config()
  assert (c.data.frames, c.data.fps) == (base.data.frames // 2, base.data.fps // 2)
  assert tuple(c.model.temporal_factors) == (2, 2) and c.stages == base.stages
  build.build_stage(c, stages.get_stage("video"))  # a valid video-stage config


def test_sample_run_tsr_options_are_checked_first(tmp_path):
  from stunet.sampling import sample_run
  run = str(tmp_path)
  with pytest.raises(ValueError, match="pass its workdir as --tsr_workdir"):
    sample_run.sample_run(run, ["a prompt"], stage="tsr", progress=False)
  with pytest.raises(ValueError, match="tsr_steps must be a positive integer, got 0"):
    sample_run.sample_run(run, ["a prompt"], tsr=sample_run.TSROptions(run, steps=0),
                          progress=False)
  i2v = sample_run.ModeInputs(mode="i2v", image="first.png")
  with pytest.raises(ValueError, match="fills in text-to-video keyframes of the 'video' stage"):
    sample_run.sample_run(run, ["a prompt"], inputs=i2v, tsr=sample_run.TSROptions(run),
                          progress=False)
