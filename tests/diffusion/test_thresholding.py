"""Tests for static clipping and Imagen's dynamic thresholding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import thresholding


def test_dynamic_leaves_in_range_examples_untouched():
  x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3), minval=-0.9, maxval=0.9)
  np.testing.assert_array_equal(thresholding.dynamic_threshold(x, 0.995), x)


def test_dynamic_rescales_by_the_per_example_quantile():
  # Example 0 is in range; example 1 has |x| spread uniformly on [0, 4].
  base = jnp.linspace(-1.0, 1.0, 1001)
  x = jnp.stack([0.5 * base, 4.0 * base])  # b n
  out = thresholding.dynamic_threshold(x, 0.9)
  s = float(jnp.quantile(jnp.abs(x[1]), 0.9))
  np.testing.assert_allclose(s, 3.6, atol=1e-2)
  np.testing.assert_allclose(out[0], x[0])
  np.testing.assert_allclose(out[1], jnp.clip(x[1], -s, s) / s, rtol=1e-6)
  assert float(jnp.max(jnp.abs(out))) <= 1.0 + 1e-6
  # Pixels below the quantile keep their order (rescaled, not flattened).
  assert np.all(np.diff(np.asarray(out[1][50:950])) > 0)


def test_dynamic_bounds_video_batch():
  x = 5.0 * jax.random.normal(jax.random.key(1), (2, 3, 4, 4, 3))  # b t h w c
  out = thresholding.threshold(x, "dynamic", 0.995)
  assert out.shape == x.shape
  assert float(jnp.max(jnp.abs(out))) <= 1.0 + 1e-6


def test_static_and_none():
  x = jnp.array([[-3.0, -0.5, 0.2, 7.0]])
  np.testing.assert_array_equal(thresholding.threshold(x, "static"), np.array([[-1.0, -0.5, 0.2, 1.0]], np.float32))
  np.testing.assert_array_equal(thresholding.threshold(x, "none"), x)


def test_bad_values_named():
  with pytest.raises(ValueError, match="diffusion.thresholding"):
    thresholding.threshold(jnp.zeros((1, 2)), "soft")
  with pytest.raises(ValueError, match="diffusion.dynamic_percentile"):
    thresholding.dynamic_threshold(jnp.zeros((1, 2)), 99.5)
