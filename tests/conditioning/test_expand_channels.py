"""Tests for zero-initialised conditioning input channels (SPEC §5)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.conditioning import expand_channels
from stunet.nn.stunet import STUNet
from tests.nn.unet_testing import example_inputs, randomize, tiny_unet_config

# Two levels and no spatial attention: the smallest STUNet that still has every temporal layer.
_SMALL = dict(channels=8, channel_mult=(1, 2), attention_levels=(False, False),
              mid_attention=False, temporal_factors=(2,))


def test_conditional_model_equals_unconditional_at_init():
  config = tiny_unet_config(**_SMALL)
  cond_config = tiny_unet_config(cond_channels=4, **_SMALL)
  x, noise_cond, text, mask = example_inputs(b=2, t=4, h=8, w=8)
  shapes = jax.eval_shape(lambda: STUNet(config).init(jax.random.key(0), x, noise_cond, text,
                                                      mask))["params"]
  # Random weights everywhere (zero-initialised outputs would make both models output 0).
  params = randomize(shapes, seed=3)
  expanded = expand_channels.expand_input_channels(params, 4)
  kernel = expanded["conv_in"]["kernel"]
  assert kernel.shape == (3, 3, 7, 8)
  np.testing.assert_array_equal(kernel[:, :, 3:], 0)
  np.testing.assert_array_equal(kernel[:, :, :3], params["conv_in"]["kernel"])
  extra = jax.random.normal(jax.random.key(5), x.shape[:-1] + (4,)) * 10
  uncond = jax.jit(STUNet(config).apply)({"params": params}, x, noise_cond, text, mask)
  cond = jax.jit(STUNet(cond_config).apply)({"params": expanded},
                                            jnp.concatenate([x, extra], -1), noise_cond, text,
                                            mask)
  assert float(jnp.abs(uncond).mean()) > 1e-2
  np.testing.assert_allclose(cond, uncond, rtol=1e-5, atol=1e-5)


def test_boxed_params_keep_their_axes_and_errors_are_named():
  kernel = nn.Partitioned(jnp.ones((3, 3, 3, 8)), names=(None, None, "conv_in", "conv_out"))
  params = {"conv_in": {"kernel": kernel, "bias": jnp.zeros(8)}}
  out = expand_channels.expand_input_channels(params, 4)
  assert isinstance(out["conv_in"]["kernel"], nn.Partitioned)
  assert out["conv_in"]["kernel"].names == kernel.names
  assert out["conv_in"]["kernel"].value.shape == (3, 3, 7, 8)
  with pytest.raises(ValueError, match=r"expected \[kh, kw, 3, c\] for an unconditional"):
    expand_channels.expand_input_channels(out, 4)
  with pytest.raises(ValueError, match="no conv_in/kernel"):
    expand_channels.expand_input_channels({"params": params}, 4)
  with pytest.raises(ValueError, match="new_cond_channels must be a positive integer"):
    expand_channels.expand_input_channels(params, 0)
