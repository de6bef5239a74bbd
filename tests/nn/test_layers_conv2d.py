"""`layers.Conv2D`: the im2col path for frames smaller than the kernel is the same function
(same parameters, outputs and gradients to float rounding) as `nn.Conv`, and frames at least
as large as the kernel take `nn.Conv`'s own path bit for bit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import layers
from stunet.nn.config import UNetConfig
from stunet.nn.stunet import STUNet
from tests.nn import unet_testing


def _value_and_grads(module, params, x):
  loss = lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)


@pytest.mark.parametrize("size,stride,kernel", [(2, 1, 3), (1, 1, 3), (2, 2, 3), (2, 1, 5)])
def test_small_frames_match_nn_conv(size, stride, kernel):
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, size, size, 8)), jnp.float32)
  auto = layers.conv2d(16, kernel_size=kernel, stride=stride)
  pad = (kernel - 1) // 2
  reference = nn.Conv(16, (kernel, kernel), strides=(stride, stride), padding=((pad, pad),) * 2)
  params = jax.jit(auto.init)(jax.random.key(0), x)
  # The same parameter tree and initial values as nn.Conv: checkpoints load either way.
  jax.tree.map(np.testing.assert_array_equal, nn.unbox(params),
               jax.jit(reference.init)(jax.random.key(0), x))
  params = unet_testing.randomize(params)
  (value, grads) = _value_and_grads(auto, params, x)
  (ref_value, ref_grads) = _value_and_grads(reference, params, x)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads,
               ref_grads)
  # ... and no convolution is left for XLA to swap.
  hlo = jax.jit(auto.apply).lower(params, x).as_text()
  assert "convolution" not in hlo


def test_frames_as_large_as_the_kernel_take_nn_conv_path():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 3, 8)), jnp.float32)
  auto, conv = layers.conv2d(8), layers.conv2d(8, implementation="conv")
  params = unet_testing.randomize(jax.jit(auto.init)(jax.random.key(0), x))
  np.testing.assert_array_equal(jax.jit(auto.apply)(params, x), jax.jit(conv.apply)(params, x))


def test_unknown_implementation_is_named():
  with pytest.raises(ValueError, match="implementation"):
    layers.conv2d(4, implementation="fft").init(jax.random.key(0), jnp.zeros((1, 2, 2, 4)))
  with pytest.raises(ValueError, match="spatial_conv_impl"):
    UNetConfig.from_config(dict(spatial_conv_impl="fft"))


def test_stunet_with_a_2x2_coarsest_level_matches_the_conv_path():
  """8x8 frames, three levels: the coarsest level (res blocks, mid block, upsampler) is 2x2."""
  x, noise_cond, text, mask = unet_testing.example_inputs(b=1, t=4, h=8, w=8)
  models = {impl: STUNet(unet_testing.tiny_unet_config(spatial_conv_impl=impl))
            for impl in ("auto", "conv")}
  params = unet_testing.randomize(
      jax.eval_shape(models["conv"].init, jax.random.key(0), x, noise_cond, text, mask))

  def loss(p, model):
    return jnp.mean(jnp.square(model.apply(p, x, noise_cond, text, mask)))

  outs = {impl: jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, m)
          for impl, m in models.items()}
  np.testing.assert_allclose(outs["auto"][0], outs["conv"][0], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               outs["auto"][1], outs["conv"][1])
