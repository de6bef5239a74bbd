"""STUNet behaviour: shapes, equality with the per-frame T2I U-Net, receptive field, errors."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stunet.nn.inflate import inflate, label_params
from stunet.nn.stunet import STUNet
from stunet.nn.t2i_unet import T2IUNet

from tests.nn.unet_testing import example_inputs, randomize, tiny_unet_config


@pytest.mark.parametrize("b,t,h,w", [(1, 4, 8, 8), (2, 8, 16, 16), (3, 12, 8, 24)])
def test_output_shape_equals_input_shape(tiny_config, b, t, h, w):
  model = STUNet(tiny_config)
  inputs = example_inputs(b, t, h, w)
  variables = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  out = jax.eval_shape(model.apply, variables, *inputs)
  assert out.shape == (b, t, h, w, 3)


def test_forward_shape_and_finite_values(tiny_config):
  model = STUNet(tiny_config)
  inputs = example_inputs(2, 8, 8, 16)  # non-square frames
  params = randomize(model.init(jax.random.key(0), *inputs)["params"])
  out = jax.jit(model.apply)({"params": params}, *inputs)
  assert out.shape == (2, 8, 8, 16, 3)
  assert np.isfinite(np.asarray(out)).all()


def test_t2i_accepts_images_and_videos(tiny_config):
  model = T2IUNet(tiny_config)
  x, nc, text, mask = example_inputs(2, 3, 8, 8)
  params = randomize(model.init(jax.random.key(0), x[:, 0], nc, text, mask)["params"])
  image_out = model.apply({"params": params}, x[:, 0], nc, text, mask)
  video_out = model.apply({"params": params}, x, nc, text, mask)
  assert image_out.shape == (2, 8, 8, 3)
  np.testing.assert_allclose(np.asarray(video_out[:, 0]), np.asarray(image_out), atol=1e-5)


@pytest.mark.parametrize("attention_depth", [1, 2])
def test_inflated_with_unit_factors_equals_t2i_per_frame(attention_depth):
  """SPEC §2: with every temporal factor 1, the inflated model is the T2I model per frame."""
  cfg = tiny_unet_config(temporal_factors=(1, 1), temporal_attention_depth=attention_depth,
                         temporal_attention_levels=(-1, 1))
  x, nc, text, mask = example_inputs(2, 6, 16, 8)
  t2i, video = T2IUNet(cfg), STUNet(cfg)
  t2i_params = randomize(t2i.init(jax.random.key(0), x[:, 0], nc, text, mask)["params"])
  stunet_params = inflate(t2i_params, video.init(jax.random.key(1), x, nc, text, mask)["params"])
  labels = flax.traverse_util.flatten_dict(label_params(stunet_params), sep="/")
  assert sum(v == "temporal" for v in labels.values()) > 0

  out = video.apply({"params": stunet_params}, x, nc, text, mask)
  b, t = x.shape[:2]
  # The reference: fold frames into the batch and repeat the per-example conditioning.
  ref = t2i.apply({"params": t2i_params}, x.reshape((b * t,) + x.shape[2:]), jnp.repeat(nc, t),
                  jnp.repeat(text, t, axis=0), jnp.repeat(mask, t, axis=0))
  assert float(jnp.abs(ref).max()) > 1e-2  # random weights: a non-trivial output
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref.reshape(out.shape)), atol=1e-5,
                             rtol=0)


def test_conditioning_follows_each_example_through_temporal_resampling(tiny_config):
  """Changing example 1's noise level or caption must leave example 0's output untouched."""
  model = STUNet(tiny_config)
  x, nc, text, mask = example_inputs(2, 8, 8, 8)
  params = randomize(model.init(jax.random.key(0), x, nc, text, mask)["params"])
  apply = jax.jit(lambda *a: model.apply({"params": params}, *a))
  base = apply(x, nc, text, mask)
  other = apply(x, nc.at[1].add(100.0), text.at[1].add(1.0), mask)
  np.testing.assert_array_equal(np.asarray(base[0]), np.asarray(other[0]))
  assert float(jnp.abs(base[1] - other[1]).max()) > 1e-3


def test_whole_clip_receptive_field(tiny_config):
  """The first output frame depends on the last input frame (the coarse level sees the clip)."""
  model = STUNet(tiny_config)
  x, nc, text, mask = example_inputs(1, 8, 8, 8)
  params = randomize(model.init(jax.random.key(0), x, nc, text, mask)["params"])

  def first_frame_energy(x):
    return jnp.sum(model.apply({"params": params}, x, nc, text, mask)[:, 0] ** 2)

  grad = jax.grad(first_frame_energy)(x)
  assert float(jnp.abs(grad[:, -1]).max()) > 0


def test_frozen_spatial_optimizer_step_changes_only_temporal_leaves(tiny_config):
  model = STUNet(tiny_config)
  x, nc, text, mask = example_inputs(2, 8, 8, 8)
  params = randomize(model.init(jax.random.key(0), x, nc, text, mask)["params"])
  labels = label_params(params)
  tx = optax.multi_transform({"temporal": optax.adam(1e-2), "spatial": optax.set_to_zero()},
                             labels)
  opt_state = tx.init(params)

  def loss(p):
    return jnp.mean(model.apply({"params": p}, x, nc, text, mask) ** 2)

  grads = jax.grad(loss)(params)
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
  params = randomize(model.init(jax.random.key(0), x, nc, text, mask)["params"])
  init_kernel = model.init(jax.random.key(3), x, nc, text, mask)["params"]["conv_in"]["kernel"]
  assert np.all(np.asarray(init_kernel.value)[:, :, 3:] == 0)
  params["conv_in"]["kernel"] = init_kernel.value
  a = model.apply({"params": params}, x, nc, text, mask)
  b = model.apply({"params": params}, x.at[..., 3:].set(5.0), nc, text, mask)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_remat_and_bfloat16_compute_keep_the_function(tiny_config):
  x, nc, text, mask = example_inputs(1, 8, 8, 8)
  model = STUNet(tiny_config)
  params = randomize(model.init(jax.random.key(0), x, nc, text, mask)["params"])

  def loss(m, p):
    return jnp.mean(m.apply({"params": p}, x, nc, text, mask) ** 2)

  g = jax.grad(lambda p: loss(model, p))(params)
  g_remat = jax.grad(lambda p: loss(STUNet(tiny_unet_config(remat=True)), p))(params)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_remat)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)
  out32 = model.apply({"params": params}, x, nc, text, mask)
  out16 = STUNet(tiny_unet_config(dtype="bfloat16")).apply({"params": params}, x, nc, text, mask)
  assert out16.dtype == jnp.float32
  rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
  assert rel < 0.05
