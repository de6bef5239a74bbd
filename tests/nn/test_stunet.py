"""STUNet behaviour: shapes, equality with the per-frame T2I U-Net, receptive field, errors."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stunet.nn.inflate import inflate, label_params
from stunet.nn.stunet import STUNet, zero_cond_channels_kernel_init
from stunet.nn.t2i_unet import T2IUNet

from tests.nn.unet_testing import example_inputs, randomize, tiny_unet_config


def init_params(model, inputs, seed=0):
  """Real initial values (jitted: eager init dispatches hundreds of ops one by one)."""
  return jax.jit(model.init)(jax.random.key(seed), *inputs)["params"]


def abstract_params(model, inputs):
  return jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]


@pytest.fixture(scope="module")
def video_model(tiny_config):
  """A tiny STUNet with random (non-zero) weights on a 2x8x8x8 video, and its jitted apply."""
  model = STUNet(tiny_config)
  inputs = example_inputs(2, 8, 8, 8)
  params = randomize(abstract_params(model, inputs))
  apply = jax.jit(lambda p, *a: model.apply({"params": p}, *a))
  return model, params, inputs, apply


@pytest.mark.parametrize("b,t,h,w", [(1, 4, 8, 8), (2, 8, 16, 16), (3, 12, 8, 24)])
def test_output_shape_equals_input_shape(tiny_config, b, t, h, w):
  model = STUNet(tiny_config)
  inputs = example_inputs(b, t, h, w)
  variables = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  out = jax.eval_shape(model.apply, variables, *inputs)
  assert out.shape == (b, t, h, w, 3)


def test_forward_values_are_finite(video_model):
  _, params, inputs, apply = video_model
  out = apply(params, *inputs)
  assert out.shape == (2, 8, 8, 8, 3)
  assert np.isfinite(np.asarray(out)).all() and float(jnp.abs(out).max()) > 1e-2


def test_t2i_accepts_images_and_videos(tiny_config):
  model = T2IUNet(tiny_config)
  x, nc, text, mask = example_inputs(2, 3, 8, 8)
  params = randomize(abstract_params(model, (x[:, 0], nc, text, mask)))
  apply = jax.jit(lambda p, *a: model.apply({"params": p}, *a))
  image_out = apply(params, x[:, 0], nc, text, mask)
  video_out = apply(params, x, nc, text, mask)
  assert image_out.shape == (2, 8, 8, 3)
  np.testing.assert_allclose(np.asarray(video_out[:, 0]), np.asarray(image_out), atol=1e-5)


def test_inflated_with_unit_factors_equals_t2i_per_frame():
  """SPEC §2: with every temporal factor 1, the inflated model is the T2I model per frame."""
  cfg = tiny_unet_config(temporal_factors=(1, 1), temporal_attention_depth=2,
                         temporal_attention_levels=(-1, 1))
  x, nc, text, mask = example_inputs(2, 6, 16, 8)
  t2i, video = T2IUNet(cfg), STUNet(cfg)
  t2i_params = randomize(abstract_params(t2i, (x[:, 0], nc, text, mask)))
  stunet_params = inflate(t2i_params, init_params(video, (x, nc, text, mask), seed=1))
  labels = flax.traverse_util.flatten_dict(label_params(stunet_params), sep="/")
  assert sum(v == "temporal" for v in labels.values()) > 0

  out = jax.jit(video.apply)({"params": stunet_params}, x, nc, text, mask)
  b, t = x.shape[:2]
  # The reference: fold frames into the batch and repeat the per-example conditioning.
  ref = jax.jit(t2i.apply)({"params": t2i_params}, x.reshape((b * t,) + x.shape[2:]),
                           jnp.repeat(nc, t), jnp.repeat(text, t, axis=0),
                           jnp.repeat(mask, t, axis=0))
  assert float(jnp.abs(ref).max()) > 1e-2  # random weights: a non-trivial output
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref.reshape(out.shape)), atol=1e-5,
                             rtol=0)


def test_linear_resampling_keeps_a_static_clip_equal_to_t2i():
  """With `temporal_resample_init="linear"` and real temporal factors, the inflated model of a
  static clip (every frame and its noise the same) is the T2I model on that frame, and a
  moving clip is not (unlike unit factors, the resamplers mix frames at init)."""
  cfg = tiny_unet_config(temporal_factors=(2, 2), temporal_resample_init="linear")
  x, nc, text, mask = example_inputs(2, 8, 16, 8)
  static = jnp.repeat(x[:, :1], x.shape[1], axis=1)
  t2i, video = T2IUNet(cfg), STUNet(cfg)
  t2i_params = randomize(abstract_params(t2i, (x[:, 0], nc, text, mask)))
  stunet_params = inflate(t2i_params, init_params(video, (x, nc, text, mask), seed=1))
  apply = jax.jit(video.apply)
  out = apply({"params": stunet_params}, static, nc, text, mask)
  ref = jax.jit(t2i.apply)({"params": t2i_params}, static[:, 0], nc, text, mask)
  assert float(jnp.abs(ref).max()) > 1e-2
  for t in range(x.shape[1]):
    np.testing.assert_allclose(np.asarray(out[:, t]), np.asarray(ref), atol=1e-5, rtol=0)
  moving = apply({"params": stunet_params}, x, nc, text, mask)
  per_frame = jax.jit(t2i.apply)({"params": t2i_params}, x[:, 3], nc, text, mask)
  assert float(jnp.abs(moving[:, 3] - per_frame).max()) > 1e-3


def test_bad_temporal_resample_init_is_named():
  with pytest.raises(ValueError, match="temporal_resample_init"):
    tiny_unet_config(temporal_resample_init="cubic")


def test_conditioning_follows_each_example_through_temporal_resampling(video_model):
  """Changing example 1's noise level or caption must leave example 0's output untouched."""
  _, params, (x, nc, text, mask), apply = video_model
  base = apply(params, x, nc, text, mask)
  other = apply(params, x, nc.at[1].add(100.0), text.at[1].add(1.0), mask)
  np.testing.assert_array_equal(np.asarray(base[0]), np.asarray(other[0]))
  assert float(jnp.abs(base[1] - other[1]).max()) > 1e-3


def test_whole_clip_receptive_field(video_model):
  """The first output frame depends on the last input frame (the coarse level sees the clip)."""
  model, params, (x, nc, text, mask), _ = video_model

  def first_frame_energy(x):
    return jnp.sum(model.apply({"params": params}, x, nc, text, mask)[:, 0] ** 2)

  grad = jax.jit(jax.grad(first_frame_energy))(x)
  assert float(jnp.abs(grad[:, -1]).max()) > 0


def test_frozen_spatial_optimizer_step_changes_only_temporal_leaves(video_model):
  model, params, (x, nc, text, mask), _ = video_model
  labels = label_params(params)
  tx = optax.multi_transform({"temporal": optax.adam(1e-2), "spatial": optax.set_to_zero()},
                             labels)
  opt_state = tx.init(params)

  def loss(p):
    return jnp.mean(model.apply({"params": p}, x, nc, text, mask) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  updates, _ = tx.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  flat_old = flax.traverse_util.flatten_dict(params, sep="/")
  flat_new = flax.traverse_util.flatten_dict(new_params, sep="/")
  flat_labels = flax.traverse_util.flatten_dict(labels, sep="/")
  changed = {k for k in flat_old if not np.array_equal(flat_old[k], flat_new[k])}
  temporal = {k for k, v in flat_labels.items() if v == "temporal"}
  assert changed and changed <= temporal
  assert len(changed) > len(temporal) // 2  # the step really trains the temporal layers


def test_labels_cover_the_temporal_modules(tiny_config):
  model = STUNet(tiny_config)
  inputs = example_inputs(1, 8, 8, 8)
  params = jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]
  labels = flax.traverse_util.flatten_dict(label_params(params), sep="/")
  temporal = sorted(k for k, v in labels.items() if v == "temporal")
  assert any(k.startswith("down_0/temporal_down/") for k in temporal)
  assert any(k.startswith("up_1/temporal_up/") for k in temporal)
  assert any(k.startswith("mid/temporal_0/attention_0/") for k in temporal)
  assert any("/temporal_0/conv_block/" in k for k in temporal)
  t2i_params = jax.eval_shape(T2IUNet(tiny_config).init, jax.random.key(0), *inputs)["params"]
  spatial = {k for k, v in labels.items() if v == "spatial"}
  assert spatial == set(flax.traverse_util.flatten_dict(t2i_params, sep="/"))


def test_every_parameter_has_logical_axis_names(tiny_config):
  model = STUNet(tiny_config)
  params = jax.eval_shape(model.init, jax.random.key(0), *example_inputs(1, 8, 8, 8))["params"]
  leaves = jax.tree.leaves(params, is_leaf=lambda l: isinstance(l, nn.Partitioned))
  assert leaves and all(isinstance(l, nn.Partitioned) for l in leaves)
  assert all(len(l.names) == l.value.ndim for l in leaves)


def test_frames_not_divisible_by_temporal_factors_names_fields(tiny_config):
  model = STUNet(tiny_config)
  with pytest.raises(ValueError, match=r"Number of frames 6 .*model.temporal_factors=\(2, 2\).*= 4"):
    jax.eval_shape(model.init, jax.random.key(0), *example_inputs(1, 6, 8, 8))


def test_frame_size_not_divisible_by_spatial_factor_names_fields(tiny_config):
  model = STUNet(tiny_config)
  with pytest.raises(ValueError, match=r"Frame size 8x10 .*factor 4.*model.channel_mult"):
    jax.eval_shape(model.init, jax.random.key(0), *example_inputs(1, 8, 8, 10))


def test_t2i_ignores_temporal_divisibility(tiny_config):
  model = T2IUNet(tiny_config)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0),
                                                      *example_inputs(1, 5, 8, 8))[0])
  assert out.shape == (1, 5, 8, 8, 3)


def test_wrong_channel_count_is_explained(tiny_config):
  with pytest.raises(ValueError, match=r"model.in_channels \+ model.cond_channels"):
    jax.eval_shape(STUNet(tiny_config).init, jax.random.key(0), *example_inputs(1, 8, 8, 8, c=4))


def test_conditioning_channels_start_at_zero():
  cfg = tiny_unet_config(cond_channels=4)
  model = STUNet(cfg)
  x, nc, text, mask = example_inputs(1, 8, 8, 8, c=7)
  params = randomize(abstract_params(model, (x, nc, text, mask)))
  init_kernel = zero_cond_channels_kernel_init(3)(jax.random.key(0), (3, 3, 7, 16))
  assert np.all(np.asarray(init_kernel)[:, :, 3:] == 0)
  assert np.all(np.asarray(init_kernel)[:, :, :3] != 0)
  params["conv_in"]["kernel"] = init_kernel
  apply = jax.jit(lambda *a: model.apply({"params": params}, *a))
  a = apply(x, nc, text, mask)
  b = apply(x.at[..., 3:].set(5.0), nc, text, mask)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("policy", ["full,dots,dots_no_batch"])
def test_remat_keeps_the_gradients(video_model, policy):
  model, params, (x, nc, text, mask), _ = video_model

  def loss(m, p):
    return jnp.mean(m.apply({"params": p}, x, nc, text, mask) ** 2)

  g = jax.jit(jax.grad(lambda p: loss(model, p)))(params)
  remat_model = STUNet(tiny_unet_config(remat=True, remat_policy=policy))
  g_remat = jax.jit(jax.grad(lambda p: loss(remat_model, p)))(params)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_remat)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


def _remat_policies(config, inputs):
  """The policy of every rematerialised region in the model's forward jaxpr, in order."""
  model = STUNet(config)
  params = abstract_params(model, inputs)
  closed = jax.make_jaxpr(lambda p: model.apply({"params": p}, *inputs))(params)
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ("checkpoint", "remat", "remat2"):
        found.append(eqn.params["policy"])
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(closed.jaxpr)
  return found


def test_remat_policy_reaches_each_level():
  inputs = example_inputs(1, 8, 8, 8)
  cp = jax.checkpoint_policies
  assert _remat_policies(tiny_unet_config(remat=False, remat_policy="dots"), inputs) == []
  full = _remat_policies(tiny_unet_config(remat=True), inputs)
  assert full and set(full) == {cp.nothing_saveable}
  # Level 0 left alone: fewer regions, the rest still save nothing.
  coarse = _remat_policies(tiny_unet_config(remat=True, remat_policy="off,full,full"), inputs)
  assert 0 < len(coarse) < len(full) and set(coarse) == {cp.nothing_saveable}
  mixed = _remat_policies(tiny_unet_config(remat=True, remat_policy="full, dots,dots_no_batch"),
                          inputs)
  assert len(mixed) == len(full)
  assert set(mixed) == {cp.nothing_saveable, cp.dots_saveable,
                        cp.dots_with_no_batch_dims_saveable}
  # The mid block follows the last level.
  assert mixed[len(full) // 2] is cp.dots_with_no_batch_dims_saveable


@pytest.mark.parametrize("policy,match", [("some", "must be one of"),
                                          ("full,dots", "2 policies for 3 levels"),
                                          ("full,dots,full,dots", "4 policies for 3 levels")])
def test_bad_remat_policy_is_named(policy, match):
  with pytest.raises(ValueError, match=f"model.remat_policy.*{match}"):
    tiny_unet_config(remat=True, remat_policy=policy)


def test_bfloat16_compute_stays_close_to_float32(video_model):
  model, params, (x, nc, text, mask), apply = video_model
  out32 = apply(params, x, nc, text, mask)
  bf16 = STUNet(tiny_unet_config(dtype="bfloat16"))
  out16 = jax.jit(bf16.apply)({"params": params}, x, nc, text, mask)
  assert out16.dtype == jnp.float32
  rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
  assert rel < 0.05
