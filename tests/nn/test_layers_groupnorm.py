"""GroupNorm keeps channels in the minor dimension and equals the grouped-reshape reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import layers


def _reference(x, scale, bias, groups, eps):
  """The Flax-style formulation: reshape to `... h w groups c/groups`, reduce h, w, c/groups."""
  x32 = x.astype(jnp.float32)
  c = x.shape[-1]
  g = x32.reshape(x.shape[:-1] + (groups, c // groups))
  mean = jnp.mean(g, axis=(-4, -3, -1), keepdims=True)
  var = jnp.mean(jnp.square(g - mean), axis=(-4, -3, -1), keepdims=True)
  normed = ((g - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape)
  return normed * scale + bias


@pytest.mark.parametrize("shape, groups", [((2, 3, 4, 5, 64), 32), ((2, 6, 6, 32), 8),
                                           ((1, 2, 3, 3, 12), 12), ((2, 4, 4, 16), 1)])
def test_matches_grouped_reshape_reference(shape, groups):
  kx, ks, kb = jax.random.split(jax.random.key(0), 3)
  # An offset mean makes a one-pass variance (E[x^2] - E[x]^2) fail; the two-pass one holds.
  x = 3.0 + 2.0 * jax.random.normal(kx, shape)
  c = shape[-1]
  scale, bias = 1.0 + jax.random.normal(ks, (c,)), jax.random.normal(kb, (c,))
  out = layers.GroupNorm(groups, 1e-5).apply({"params": {"scale": scale, "bias": bias}}, x)
  ref = _reference(x, scale, bias, groups, 1e-5)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_no_reshape_of_the_activation_to_groups():
  """The activation is never laid out as `... groups c/groups` (TPU would pad c/groups to 128)."""
  x = jnp.zeros((2, 4, 8, 8, 256), jnp.bfloat16)
  norm = layers.GroupNorm(32, 1e-5, dtype=jnp.bfloat16)
  params = {"params": {"scale": jnp.ones(256), "bias": jnp.zeros(256)}}
  text = jax.jit(norm.apply).lower(params, x).as_text()
  # Only the per-frame statistics (2x4x256 -> 2x4x32x8) are regrouped, never h w c.
  assert "8x8x32x8x" not in text
  assert "tensor<2x4x8x8x256xf32>" in text
