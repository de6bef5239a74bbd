"""The train step: sharding invariance, learning, frozen leaves, EMA, cross-mesh restore.

One tiny T2I setup is compiled on a 1-device and on a 2x4 (data, fsdp) mesh and shared by the
tests of this module.
"""

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from stunet.data import global_batch
from stunet.parallel import mesh as mesh_lib
from stunet.train import build
from stunet.train import checkpoint
from stunet.train import optimizer
from stunet.train import stages
from stunet.train import state as state_lib
from stunet.train import step as step_lib
from tests.nn.unet_testing import randomize
from tests.train.conftest import fixed_batch
from tests.train.conftest import tiny_config


class Run:
  """A stage's sharded state and jitted step on one mesh.

  `state` (host arrays of the same stage's state) is placed with this mesh's shardings instead
  of running the initialiser: a sharded init compiles the whole initialiser for the mesh, and
  that it equals the one-device init is checked once, in tests/train/test_step_accumulation.py.
  """

  def __init__(self, config, stage_name, devices, parent=None, state=None):
    self.config = config
    self.setup = build.build_stage(config, stages.get_stage(stage_name))
    self.mesh = mesh_lib.make_mesh(config.mesh, devices)
    self.rules = config.mesh.rules
    if state is None:
      self.state, self.shardings = state_lib.create_sharded_state(
          self.setup.boxed_init, self.mesh, self.rules, jax.random.key(0), parent)
    else:
      target = state_lib.abstract_state(self.setup.boxed_init, self.mesh, self.rules,
                                        jax.random.key(0), parent)
      self.shardings = jax.tree.map(lambda x: x.sharding, target)
      self.state = jax.device_put(state, self.shardings)
    self.batch_sharding = global_batch.batch_sharding(self.mesh, config.data.batch_axes)
    keys = (self.setup.stage.modality, "text_ids", "text_mask")
    self.step = step_lib.jit_step(self.setup.step_fn(), self.shardings,
                                  {k: self.batch_sharding for k in keys}, self.mesh)

  def put(self, batch):
    return {k: jax.device_put(v, self.batch_sharding) for k, v in batch.items()}


@pytest.fixture(scope="module")
def one_device():
  run = Run(tiny_config(), "t2i", jax.devices()[:1])
  run.initial = _host(run.state)  # before any test steps (and donates) it
  return run


@pytest.fixture(scope="module")
def eight_devices(one_device):
  return Run(tiny_config(mesh_shape=(2, 4, 1)), "t2i", jax.devices(), state=one_device.initial)


@pytest.fixture(scope="module")
def image_batch(one_device):
  return fixed_batch(one_device.setup.tokenizer, "image", one_device.setup.example_shape)


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_one_step_same_on_one_and_eight_devices(one_device, eight_devices, image_batch):
  s1 = _host(one_device.state)
  assert int(one_device.state.step) == int(eight_devices.state.step) == 0
  new1, m1 = one_device.step(one_device.state, one_device.put(image_batch))
  new8, m8 = eight_devices.step(eight_devices.state, eight_devices.put(image_batch))
  eight_devices.state = new8  # the old state was donated
  one_device.state = new1
  np.testing.assert_allclose(float(m1["loss"]), float(m8["loss"]), rtol=1e-5, atol=1e-6)
  p1, p8 = _host(new1.params), _host(new8.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), p1, p8)
  assert int(new8.step) == 1
  # The params moved (a step with a zero learning rate would pass the check above trivially).
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(s1.params), jax.tree.leaves(p1)))


def test_shardings_follow_the_rules(eight_devices, image_batch):
  unet = eight_devices.state.params["unet"]
  assert unet["conv_in"]["kernel"].sharding.spec == P(None, None, None, "fsdp")  # 16 / 4
  assert unet["conv_in"]["bias"].sharding.spec == P("fsdp")
  assert unet["conv_out"]["kernel"].shape[-1] == 3
  assert unet["conv_out"]["kernel"].sharding.spec == P(None, None, None, None)  # 3 % 4
  text = eight_devices.state.params["text"]
  assert text["token_embedding"]["embedding"].sharding.spec == P(None, "fsdp")  # vocab, embed
  # Adam moments and EMA are laid out like their parameters.
  mu = [x for x in jax.tree.leaves(eight_devices.state.opt_state)
        if getattr(x, "shape", None) == unet["conv_in"]["kernel"].shape]
  assert mu and all(x.sharding.spec == P(None, None, None, "fsdp") for x in mu)
  assert (eight_devices.state.ema_params["unet"]["conv_in"]["kernel"].sharding.spec
          == P(None, None, None, "fsdp"))
  batch = eight_devices.put(image_batch)
  assert batch["image"].sharding.spec == P(("data", "fsdp"))
  assert batch["image"].addressable_shards[0].data.shape == (1, 16, 16, 3)


# XLA's backend optimisations, which the session's flags skip to shorten compiles: the overfit
# test's 299 steps run twice as fast on a step compiled with them, for ~4 s more compile.
OPTIMISED = {"xla_backend_optimization_level": 2, "xla_llvm_disable_expensive_passes": False}


def test_overfits_a_fixed_batch(one_device, image_batch):
  batch = one_device.put(image_batch)
  with jax.set_mesh(one_device.mesh):
    step = one_device.step.jitted.lower(one_device.state, batch).compile(OPTIMISED)
  state, losses = one_device.state, []
  for _ in range(299):  # the schedule has 300 steps; one was taken by the first test
    state, metrics = step(state, batch)
    losses.append(metrics["loss"])
  one_device.state = state
  losses = np.asarray(jax.device_get(losses))
  first, last = losses[:20].mean(), losses[-20:].mean()
  assert np.isfinite(losses).all()
  assert first / last >= 5.0, (first, last)


def test_restore_from_eight_onto_four_devices(eight_devices, tmp_path):
  saved_step = int(eight_devices.state.step)  # 1 after the step test above, 0 when run alone
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), eight_devices.config.ckpt)
  ckpt.save(1, eight_devices.state, None, {"step": 1})
  ckpt.wait()
  config4 = tiny_config(mesh_shape=(2, 2, 1))
  mesh4 = mesh_lib.make_mesh(config4.mesh, jax.devices()[:4])
  setup = build.build_stage(config4, stages.get_stage("t2i"))
  target = state_lib.abstract_state(setup.boxed_init, mesh4, config4.mesh.rules,
                                    jax.random.key(0))
  restored = ckpt.restore(1, target)
  ckpt.close()
  kernel = restored.params["unet"]["conv_in"]["kernel"]
  assert kernel.sharding.mesh.devices.size == 4
  assert kernel.sharding.spec == P(None, None, None, "fsdp")
  assert int(restored.step) == saved_step
  jax.tree.map(np.testing.assert_array_equal, _host(eight_devices.state), _host(restored))


def _video_run(trainable: str):
  """`(config, parent, run)`: a video stage with the temporal text pathway, started from a
  random (trained-like) T2I parent: a fresh one's zero output conv would pass no gradient.
  The tests below build the same one for `trainable="temporal"`, so the session's compilation
  cache compiles its init and step once."""
  config = tiny_config(num_steps=20, two_levels=True)
  config.model.temporal_text = "film+cross_attention"
  config.stage.video.trainable = trainable
  t2i = build.build_stage(config, stages.get_stage("t2i"))
  parent = randomize(jax.eval_shape(t2i.init_params, jax.random.key(0)), scale=0.1)
  return config, parent, Run(config, "video", jax.devices()[:1], parent=parent)


def test_video_stage_freezes_spatial_and_text_and_ema_follows_formula():
  config, parent, run = _video_run("temporal")
  labels = run.setup.labels
  batch = run.put(fixed_batch(run.setup.tokenizer, "video", run.setup.example_shape))
  start = _host(run.state)
  # Inflation copied the T2I weights.
  np.testing.assert_array_equal(start.params["unet"]["conv_in"]["kernel"],
                                np.asarray(parent["unet"]["conv_in"]["kernel"]))
  # Frozen leaves carry no optimiser state: Adam holds exactly two moments per trainable leaf.
  n_train = sum(l == optimizer.TRAIN for l in jax.tree.leaves(labels))
  n_frozen = sum(l == optimizer.FROZEN for l in jax.tree.leaves(labels))
  assert n_train > 0 and n_frozen > 0
  assert all(l == optimizer.FROZEN for l in jax.tree.leaves(labels["text"]))
  param_shaped = [x for x in jax.tree.leaves(run.state.opt_state) if np.ndim(x) > 0]
  assert len(param_shaped) == 2 * n_train

  state, prev = run.state, start
  assert config.optim.ema_warmup
  for n in range(3):
    state, _ = run.step(state, batch)
    now = _host(state)
    decay = np.float32(min(config.optim.ema_decay, (1 + n) / (10 + n)))  # warm-up
    # The EMA holds the trainable leaves only; the frozen ones are read from params.
    assert len(jax.tree.leaves(now.ema_params)) == n_train
    for label, e0, p1, e1 in zip(jax.tree.leaves(labels), jax.tree.leaves(prev.ema_weights),
                                 jax.tree.leaves(now.params), jax.tree.leaves(now.ema_weights)):
      if label == optimizer.TRAIN:
        np.testing.assert_allclose(e1, decay * e0 + (1 - decay) * p1, rtol=1e-6, atol=1e-7)
      else:
        np.testing.assert_array_equal(e1, e0)
    prev = now
  moved = 0
  for label, a, b in zip(jax.tree.leaves(labels), jax.tree.leaves(start.params),
                         jax.tree.leaves(now.params)):
    if label == optimizer.FROZEN:
      assert a.tobytes() == b.tobytes()  # bitwise
    else:
      moved += not np.array_equal(a, b)
  assert moved > 0


def _group(path) -> str:
  names = [str(getattr(k, "key", k)) for k in path]
  if names[0] == "text":
    return "text"
  return "temporal" if any(n.startswith("temporal") for n in names) else "spatial"


@pytest.mark.parametrize("trainable,groups", [("temporal", {"temporal"}),
                                              ("temporal+text", {"temporal", "text"}),
                                              ("all", {"spatial", "temporal", "text"})])
def test_video_stage_trainable_groups_and_frozen_leaves_bitwise(trainable, groups):
  """`stage.video.trainable` picks what trains; everything else stays bitwise unchanged (params
  and EMA), and the temporal text pathway (`model.temporal_text`) trains with the temporal
  layers."""
  _, _, run = _video_run(trainable)
  labels = run.setup.labels
  batch = run.put(fixed_batch(run.setup.tokenizer, "video", run.setup.example_shape))
  start = _host(run.state)
  state = run.state
  for _ in range(2):  # zero-init branches pass gradients to their inputs from the 2nd step
    state, _ = run.step(state, batch)
  now = _host(state)
  flat_labels = jax.tree_util.tree_flatten_with_path(labels)[0]
  moved = {g: 0 for g in ("spatial", "temporal", "text")}
  text_pathway = 0
  for (path, label), a, b, e0, e1 in zip(flat_labels, jax.tree.leaves(start.params),
                                         jax.tree.leaves(now.params),
                                         jax.tree.leaves(start.ema_weights),
                                         jax.tree.leaves(now.ema_weights)):
    group = _group(path)
    assert (label == optimizer.TRAIN) == (group in groups), (path, label)
    if label == optimizer.FROZEN:
      assert a.tobytes() == b.tobytes() and e0.tobytes() == e1.tobytes(), path  # bitwise
    elif not np.array_equal(a, b):
      moved[group] += 1
      names = [str(getattr(k, "key", k)) for k in path]
      text_pathway += any(n in ("film", "cross_attn") for n in names)
  assert all(moved[g] > 0 for g in groups), moved
  assert text_pathway > 0


def test_video_stage_trainable_bad_value_names_the_field():
  config = tiny_config(two_levels=True)
  config.stage.video.trainable = "spatial"
  with pytest.raises(ValueError, match=r"config.stage.video.trainable='spatial'.*'temporal', "
                                       r"'temporal\+text', 'all'"):
    build.build_stage(config, stages.get_stage("video"))


def test_a_pretrained_text_encoder_stays_frozen_under_temporal_plus_text():
  stage = stages.get_stage("video")
  config = tiny_config()
  config.stage.video.trainable = "temporal+text"
  params = {"unet": {"temporal_0": {"k": 0}, "res_0": {"k": 0}}, "text": {"k": 0}}
  groups = stage.trained_groups(config)
  assert groups == {"temporal", "text"}
  assert stage.labels(params, trains=groups)["text"]["k"] == optimizer.TRAIN
  labels = stage.labels(params, text_frozen=True, trains=groups)
  assert labels == {"unet": {"temporal_0": {"k": optimizer.TRAIN},
                             "res_0": {"k": optimizer.FROZEN}},
                    "text": {"k": optimizer.FROZEN}}
  # Stages without the option train their fixed groups.
  assert stages.get_stage("t2i").trained_groups(config) == {"spatial", "temporal", "text"}
