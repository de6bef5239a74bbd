"""Tiny U-Net configurations and inputs shared by the model tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stunet.nn.config import UNetConfig

TEXT_LEN, TEXT_DIM = 5, 12


def tiny_unet_config(**overrides) -> UNetConfig:
  values = dict(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                attention_levels=(False, True, True), num_heads=2, mid_num_heads=2,
                norm_groups=4, temporal_factors=(2, 2), temporal_attention_heads=2,
                temporal_attention_depth=1)
  values.update(overrides)
  return UNetConfig.from_config(values)


def example_inputs(b=2, t=8, h=16, w=16, c=3, seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.normal(k[0], (b, t, h, w, c))
  noise_cond = jax.random.uniform(k[1], (b,)) * 1000
  text = jax.random.normal(k[2], (b, TEXT_LEN, TEXT_DIM))
  lengths = jnp.array([TEXT_LEN, 3] * b)[:b]  # one full caption, one padded
  mask = jnp.arange(TEXT_LEN)[None, :] < lengths[:, None]
  return x, noise_cond, text, mask


def randomize(params, seed=1, scale=0.2):
  """Replaces every leaf with random values: zero-initialised outputs would hide wiring bugs.

  Accepts concrete or abstract (`jax.eval_shape`) params, so tests need not compile `init`.
  Values come from numpy: one eager jax.random call per leaf shape would compile each.
  """
  leaves, treedef = jax.tree.flatten(nn.unbox(params))
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(treedef, [
      jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype) for l in leaves])


