"""Frame (context) parallelism: a `context` mesh axis splits a video's frames (SPEC §8).

With `activation_frames -> context` in the rules and a `context` axis in the mesh, each device
holds its clips' share of the frames. Spatial layers work frame by frame in place (no fold of
the frames into the batch, which would all-gather them), temporal convolutions exchange one
frame of halo with their neighbours, and the coarse levels whose frame count the axis does not
divide are replicated. These tests hold that from the outputs and the compiled HLO.
"""

import flax.linen as nn
import jax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from stunet.nn import stunet as stunet_lib
from stunet.parallel import hlo
from stunet.parallel import sharding as sharding_lib
from stunet.train import checkpoint
from stunet.train import config as train_config
from stunet.train import state as state_lib
from tests.nn.unet_testing import example_inputs
from tests.nn.unet_testing import randomize
from tests.nn.unet_testing import tiny_unet_config
from tests.train.conftest import fixed_batch
from tests.train.test_step import Run
from tests.train.test_step import _video_run

RULES = sharding_lib.as_rules(train_config.mesh_config().rules)
AXES = ("data", "fsdp", "context", "tensor")
T, H, W = 8, 16, 16
FSDP, CONTEXT = 2, 4
PER_DEVICE = 2  # clips per fsdp shard


def _mesh(fsdp, context):
  return jax.make_mesh((1, fsdp, context, 1), AXES, axis_types=(AxisType.Auto,) * 4,
                       devices=jax.devices()[:fsdp * context])


@pytest.fixture(scope="module")
def forward_case():
  cfg = tiny_unet_config(channels=32, norm_groups=8)
  model = stunet_lib.STUNet(cfg)
  inputs = example_inputs(b=PER_DEVICE * FSDP, t=T, h=H, w=W)
  params = randomize(jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"])
  boxed = jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]

  def forward(params, x, noise, text, mask):
    with nn.logical_axis_rules(RULES):
      return model.apply({"params": params}, x, noise, text, mask)

  reference = jax.jit(forward)(params, *inputs)
  mesh = _mesh(FSDP, CONTEXT)
  batch = NamedSharding(mesh, P(("data", "fsdp")))
  frames = NamedSharding(mesh, P(("data", "fsdp"), "context"))
  shardings = sharding_lib.tree_shardings(boxed, mesh, RULES)
  with jax.set_mesh(mesh):
    jitted = jax.jit(forward, in_shardings=(shardings, frames, batch, batch, batch),
                     out_shardings=frames)
    placed = [jax.device_put(a, s) for a, s in zip(inputs, (frames, batch, batch, batch))]
    out = jitted(jax.device_put(params, shardings), *placed)
    text = jitted.lower(params, *inputs).compile().as_text()
  return cfg, reference, out, text


def test_context_sharded_forward_equals_unsharded(forward_case):
  _, reference, out, _ = forward_case
  assert out.sharding.spec == P(("data", "fsdp"), "context")
  assert out.addressable_shards[0].data.shape == (PER_DEVICE, T // CONTEXT, H, W, 3)
  np.testing.assert_allclose(np.asarray(out), np.asarray(reference), rtol=1e-5, atol=1e-5)


def test_no_all_gather_of_a_level0_activation(forward_case):
  cfg, _, _, text = forward_case
  # No level-0 activation (`clips t' H W c`) is gathered, and nothing as big as one device's
  # clips' level-0 activation over all frames (the model's largest weight is smaller).
  level0 = [c for c in hlo.collectives(text) if c.kind == "all-gather" and len(c.shape) == 5
            and c.shape[0] == PER_DEVICE and c.shape[2:4] == (H, W)]
  assert not level0, [(g.name, g.shape) for g in level0]
  big = hlo.gathers_of(text, PER_DEVICE * T * H * W * cfg.channels)
  assert not big, [(g.name, g.shape) for g in big]
  # The frames really are split: temporal convolutions trade one-frame halos with their
  # neighbours (collective-permutes of a single level-0 frame per clip).
  halos = [c for c in hlo.collectives(text) if c.kind == "collective-permute"
           and c.shape[:2] == (PER_DEVICE, 1) and c.shape[2:4] == (H, W)]
  assert halos


def _video_on(context: int, config, parent):
  config = config.copy_and_resolve_references()
  config.mesh.axes = AXES
  config.mesh.shape = (1, 8 // context, context, 1)
  return Run(config, "video", jax.devices(), parent=parent)


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_context_sharded_train_step_equals_unsharded_and_resumes_across_sizes(tmp_path):
  """A video-stage step on (fsdp 2, context 4) equals the one-device step; its checkpoint
  restores bitwise onto one device, and the step from there equals the uninterrupted one."""
  config, parent, one = _video_run("temporal")
  sharded = _video_on(CONTEXT, config, parent)
  batch = fixed_batch(one.setup.tokenizer, "video", one.setup.example_shape)
  assert batch["video"].shape[1] % CONTEXT == 0
  jax.tree.map(np.testing.assert_array_equal, _host(one.state.params),
               _host(sharded.state.params))
  kernel = sharded.state.params["unet"]["conv_in"]["kernel"]
  assert sharded.mesh.shape["context"] == CONTEXT
  # FSDP spreads the weights over the context axis too (it would hold copies otherwise).
  assert kernel.sharding.spec == P(None, None, None, ("fsdp", "context"))

  state1, m1 = one.step(one.state, one.put(batch))
  state4, m4 = sharded.step(sharded.state, sharded.put(batch))
  np.testing.assert_allclose(float(m4["loss"]), float(m1["loss"]), rtol=1e-5, atol=1e-6)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  jax.tree.map(close, _host(state4.params), _host(state1.params))
  assert kernel.shape == state4.params["unet"]["conv_in"]["kernel"].shape

  # Save on the context mesh, restore onto one device: bitwise the saved state.
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), config.ckpt)
  ckpt.save(1, state4, None, {"step": 1})
  ckpt.wait()
  target = state_lib.abstract_state(one.setup.boxed_init, one.mesh, one.rules,
                                    jax.random.key(0), parent)
  restored = ckpt.restore(1, target)
  ckpt.close()
  saved = _host(state4)
  jax.tree.map(np.testing.assert_array_equal, saved, _host(restored))
  # The next step from the restored state equals the uninterrupted run's next step.
  resumed, _ = one.step(restored, one.put(batch))
  uninterrupted, _ = sharded.step(state4, sharded.put(batch))
  jax.tree.map(close, _host(resumed.params), _host(uninterrupted.params))
  jax.tree.map(close, _host(resumed.ema_params), _host(uninterrupted.ema_params))
  assert int(resumed.step) == int(uninterrupted.step) == 2


def test_the_added_kv_attention_of_imported_if_models_keeps_its_frames_split():
  """DeepFloyd IF's attention (text keys joined to each frame's pixel keys) under a context
  axis: the frames stay a dim of their own, with the same output as on one device."""
  from stunet.nn import if_blocks  # pylint: disable=g-import-not-at-top
  block = if_blocks.AddedKVAttention(num_heads=2, head_dim=8, norm_groups=4,
                                     cross_attention_norm="none")
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, T, 4, 4, 16)).astype(np.float32)
  text = rng.standard_normal((2, 5, 12)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
  params = randomize(jax.eval_shape(block.init, jax.random.key(0), x, text, mask)["params"])
  apply = lambda p, x, text, mask: block.apply({"params": p}, x, text, mask)
  reference = jax.jit(apply)(params, x, text, mask)
  mesh = _mesh(FSDP, CONTEXT)
  frames = NamedSharding(mesh, P(("data", "fsdp"), "context"))
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    jitted = jax.jit(apply, out_shardings=frames)
    out = jitted(params, jax.device_put(x, frames), text, mask)
    text_hlo = jitted.lower(params, x, text, mask).compile().as_text()
  np.testing.assert_allclose(np.asarray(out), np.asarray(reference), rtol=1e-5, atol=1e-5)
  share = x.size // (FSDP * CONTEXT)
  assert not hlo.gathers_of(text_hlo, share), hlo.gathers_of(text_hlo, share)
