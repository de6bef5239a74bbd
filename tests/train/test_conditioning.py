"""Conditioned stages: the conditioning hook, `conditional`, `ssr` and `tsr` stage construction.

The conditional stage starts exactly as the video model (zero-initialised new input weights),
its training batches carry random masked tasks, the SSR conditioning is the upsampled,
noise-augmented low-resolution clip plus its augmentation level, and the TSR conditioning is
the clip's keyframes in place plus the keyframe mask.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.conditioning import masks
from stunet.conditioning import ssr
from stunet.parallel import mesh as mesh_lib
from stunet.train import build
from stunet.train import conditioning
from stunet.train import stages
from stunet.train import state as state_lib
from stunet.train import step as step_lib
from tests.nn.unet_testing import randomize
from tests.train.conftest import fixed_batch
from tests.train.conftest import tiny_config


@pytest.fixture(scope="module")
def config():
  return tiny_config(num_steps=4, mesh_shape=(1, 1, 1), two_levels=True)


@pytest.fixture(scope="module")
def setups(config):
  return {name: build.build_stage(config, stages.get_stage(name))
          for name in ("t2i", "video", "conditional", "ssr", "tsr")}


def test_stage_sets_cond_channels(setups):
  assert setups["video"].config.model.cond_channels == 0
  assert setups["conditional"].config.model.cond_channels == 4
  assert setups["ssr"].config.model.cond_channels == ssr.COND_CHANNELS
  assert setups["tsr"].config.model.cond_channels == 4
  assert setups["tsr"].example_shape == (8, 16, 16, 3)
  assert setups["conditional"].example_shape == (8, 16, 16, 3)  # pixels; the model adds 4


def test_conditional_starts_as_the_video_model(setups):
  video, cond_setup = setups["video"], setups["conditional"]
  # Random values everywhere: with the zero-initialised output conv both models would give 0.
  parent = randomize(jax.eval_shape(video.init_params, jax.random.key(0)))
  fresh = jax.eval_shape(cond_setup.init_params, jax.random.key(1))
  params = nn.unbox(cond_setup.stage.from_parent(parent, fresh))
  kernel = params["unet"]["conv_in"]["kernel"]
  assert kernel.shape[2] == 7
  np.testing.assert_array_equal(kernel[:, :, 3:], 0.0)
  np.testing.assert_array_equal(kernel[:, :, :3], parent["unet"]["conv_in"]["kernel"])

  ids, mask = video.tokenizer(["a red circle moves left", "a blue square"])
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 16, 16, 3)), jnp.float32)
  cond = jnp.asarray(rng.standard_normal((2, 8, 16, 16, 4)), jnp.float32)
  noise = jnp.asarray([300.0, 800.0])

  def apply(setup, p, x):
    emb = setup.text_module.apply({"params": p["text"]}, jnp.asarray(ids), jnp.asarray(mask))
    return setup.model.apply({"params": p["unet"]}, x, noise, emb, jnp.asarray(mask, bool))

  want = jax.jit(lambda p, x: apply(video, p, x))(parent, x)
  got = jax.jit(lambda p, x: apply(cond_setup, p, x))(params, jnp.concatenate([x, cond], -1))
  assert float(jnp.abs(want).max()) > 1e-2
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_masked_tasks_layout(config):
  condition = conditioning.masked_tasks(build.stage_config(config,
                                                           stages.get_stage("conditional")))
  x0 = jax.random.uniform(jax.random.key(0), (16, 4, 8, 8, 3), minval=-1, maxval=1)
  target, cond = jax.jit(condition)(jax.random.key(1), x0)
  _, want_cond, want_mask, task = masks.random_task(jax.random.key(1), x0)
  assert cond.shape == (16, 4, 8, 8, 4)
  np.testing.assert_array_equal(cond[..., 3:], want_mask)
  np.testing.assert_array_equal(cond[..., :3], want_cond * want_mask)
  assert set(np.unique(np.asarray(cond[..., 3]))) <= {0.0, 1.0}
  assert len(set(np.asarray(task).tolist())) > 1  # several tasks in one batch
  i2v = int(np.flatnonzero(np.asarray(task) == masks.TASKS.index("image_to_video"))[0])
  np.testing.assert_array_equal(cond[i2v, 0, ..., :3], x0[i2v, 0])  # the known first frame
  np.testing.assert_array_equal(cond[i2v, 1:], 0.0)
  np.testing.assert_array_equal(target[i2v], x0[i2v])


def test_ssr_condition(setups):
  c = setups["ssr"].config
  assert (c.data.resolution, c.data.frames) == (16, 8)
  assert (c.stage.ssr.low_resolution, c.stage.ssr.window_frames) == (8, 8)
  condition = conditioning.ssr_from_high_res(c)
  x0 = jax.random.uniform(jax.random.key(0), (4, 8, 16, 16, 3), minval=-1, maxval=1)
  target, cond = jax.jit(condition)(jax.random.key(1), x0)
  assert cond.shape == (4, 8, 16, 16, 4)
  np.testing.assert_array_equal(target, x0)
  levels = np.asarray(cond[..., 3])
  assert np.all(levels == levels[:, :1, :1, :1])  # one level per example, constant
  assert np.all((levels >= c.stage.ssr.noise_aug_min) & (levels <= c.stage.ssr.noise_aug_max))
  # At level 0 the conditioning is exactly the upsampled low-resolution clip.
  clean = ssr.condition(jax.random.key(2), ssr.degrade(x0, 8), 16, 0.0, c.diffusion)
  np.testing.assert_array_equal(clean[..., :3], ssr.resize(ssr.resize(x0, 8), 16))
  noisy = ssr.condition(jax.random.key(2), ssr.degrade(x0, 8), 16, 0.5, c.diffusion)
  assert float(jnp.abs(noisy[..., :3] - clean[..., :3]).mean()) > 0.1


@pytest.mark.parametrize("field,value,message", [
    ("ssr.low_resolution", 16, "stage.ssr.low_resolution=16 must be below"),
    ("ssr.noise_aug_max", 1.0, "stage.ssr.noise_aug_min/noise_aug_max"),
    ("ssr.window_overlap", 8, "stage.ssr.window_overlap"),
    ("ssr.window_frames", -1, "stage.ssr.window_frames"),
    ("conditional.tasks", ("image_to_video", "deblur"), "stage.conditional.tasks"),
    ("conditional.min_box", 0.0, "stage.conditional.min_box"),
    ("tsr.keyframe_interval", 3, r"stage.tsr.keyframe_interval=3 must divide data.frames=8"),
    ("tsr.keyframe_interval", 1, "stage.tsr.keyframe_interval must be an integer >= 2"),
])
def test_stage_fields_are_validated(config, field, value, message):
  c = tiny_config(num_steps=4, two_levels=True)
  section, name = field.split(".")
  c.stage[section][name] = value
  with pytest.raises(ValueError, match=message):
    build.stage_config(c, stages.get_stage(section))


def test_model_cond_channels_must_match_the_stage():
  c = tiny_config(two_levels=True)
  c.model.cond_channels = 3
  with pytest.raises(ValueError, match="model.cond_channels=3"):
    build.stage_config(c, stages.get_stage("video"))
  with pytest.raises(ValueError, match="model.cond_channels=3"):
    build.stage_config(c, stages.get_stage("conditional"))


def test_conditional_train_step_uses_the_conditioning(setups):
  """One step: the zero cond weights receive gradient (the conditioning reaches the model)."""
  setup = setups["conditional"]
  mesh = mesh_lib.make_mesh(setup.config.mesh, jax.devices()[:1])
  parent = randomize(jax.eval_shape(setups["video"].init_params, jax.random.key(0)), scale=0.1)
  state, shardings = state_lib.create_sharded_state(
      setup.boxed_init, mesh, setup.config.mesh.rules, jax.random.key(0), parent)
  batch = fixed_batch(setup.tokenizer, "video", setup.example_shape)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  keys = ("video", "text_ids", "text_mask")
  run = step_lib.jit_step(setup.step_fn(), shardings, {k: sharding for k in keys}, mesh)
  before = np.asarray(state.params["unet"]["conv_in"]["kernel"])
  np.testing.assert_array_equal(before[:, :, 3:], 0.0)
  state, metrics = run(state, batch)
  after = np.asarray(state.params["unet"]["conv_in"]["kernel"])
  assert np.isfinite(float(metrics["loss"]))
  assert np.abs(after[:, :, 3:]).max() > 0


def test_tsr_condition_layout(setups):
  """Keyframes (every k-th frame) exact in place, zeros between them, mask on keyframes only,
  target the full clip."""
  c = setups["tsr"].config
  assert c.stage.tsr.keyframe_interval == 2
  condition = conditioning.keyframes_in_place(c)
  x0 = jax.random.uniform(jax.random.key(0), (2, 8, 4, 4, 3), minval=-1, maxval=1)
  target, cond = jax.jit(condition)(jax.random.key(1), x0)
  np.testing.assert_array_equal(target, x0)
  assert cond.shape == (2, 8, 4, 4, 4)
  keyframes = [0, 2, 4, 6]
  others = [1, 3, 5, 7]
  np.testing.assert_array_equal(cond[:, keyframes, ..., :3], x0[:, keyframes])
  np.testing.assert_array_equal(cond[:, others], 0.0)
  np.testing.assert_array_equal(cond[:, keyframes, ..., 3], 1.0)


def test_tsr_starts_from_the_t2i_weights(setups):
  t2i, tsr = setups["t2i"], setups["tsr"]
  parent = randomize(jax.eval_shape(t2i.init_params, jax.random.key(0)))
  fresh = jax.eval_shape(tsr.init_params, jax.random.key(1))
  params = nn.unbox(tsr.stage.from_parent(parent, fresh))
  kernel = params["unet"]["conv_in"]["kernel"]
  assert kernel.shape[2] == 7
  np.testing.assert_array_equal(kernel[:, :, 3:], 0.0)  # keyframe channels start unused
  np.testing.assert_array_equal(kernel[:, :, :3], parent["unet"]["conv_in"]["kernel"])
  jax.tree.map(np.testing.assert_array_equal, params["text"], nn.unbox(parent["text"]))
  assert tsr.stage.parent == "t2i" and tsr.stage.trains == {"spatial", "temporal"}


def test_tsr_trains_on_the_keyframes(setups):
  """Two jitted steps from the T2I weights: finite losses, the keyframe channels learn."""
  setup = setups["tsr"]
  mesh = mesh_lib.make_mesh(setup.config.mesh, jax.devices()[:1])
  parent = randomize(jax.eval_shape(setups["t2i"].init_params, jax.random.key(0)), scale=0.1)
  state, shardings = state_lib.create_sharded_state(
      setup.boxed_init, mesh, setup.config.mesh.rules, jax.random.key(0), parent)
  batch = fixed_batch(setup.tokenizer, "video", setup.example_shape)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  keys = ("video", "text_ids", "text_mask")
  run = step_lib.jit_step(setup.step_fn(), shardings, {k: sharding for k in keys}, mesh)
  text_before = jax.tree.map(np.asarray, state.params["text"])
  losses = []
  for _ in range(2):
    state, metrics = run(state, batch)
    losses.append(float(metrics["loss"]))
  assert all(np.isfinite(losses)) and int(state.step) == 2
  kernel = np.asarray(state.params["unet"]["conv_in"]["kernel"])
  assert np.abs(kernel[:, :, 3:]).max() > 0
  # The text encoder comes from the T2I run and stays frozen.
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params["text"]),
               text_before)
