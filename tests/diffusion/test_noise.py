"""Tests for the forward-process noise and its frame correlation (PYoCo's mixed noise prior)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import config as config_lib
from stunet.diffusion import guidance
from stunet.diffusion import loss as loss_lib
from stunet.diffusion import noise
from stunet.diffusion import samplers


def _frame_correlation(x):
  """Mean correlation between frames 0 and 1 of ``[b t h w c]`` (per pixel, over the batch)."""
  a, b = np.asarray(x[:, 0]).ravel(), np.asarray(x[:, 1]).ravel()
  return float(np.corrcoef(a, b)[0, 1])


def test_zero_correlation_is_the_independent_draw_exactly():
  key = jax.random.key(3)
  video, image = (2, 4, 5, 5, 3), (2, 5, 5, 3)
  np.testing.assert_array_equal(noise.gaussian(key, video), jax.random.normal(key, video))
  # Images never correlate, whatever the setting.
  np.testing.assert_array_equal(noise.gaussian(key, image, frame_correlation=0.5),
                                jax.random.normal(key, image))


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.9])
def test_frames_correlate_with_unit_variance(rho):
  x = noise.gaussian(jax.random.key(0), (64, 3, 16, 16, 3), frame_correlation=rho)
  assert abs(float(jnp.var(x)) - 1.0) < 0.03
  assert abs(_frame_correlation(x) - rho) < 0.03
  # Different clips stay independent.
  assert abs(float(np.corrcoef(np.asarray(x[0]).ravel(), np.asarray(x[1]).ravel())[0, 1])) < 0.05


def test_bad_correlation_is_named():
  with pytest.raises(ValueError, match=r"frame_noise_correlation must be in \[0, 1\)"):
    noise.gaussian(jax.random.key(0), (1, 2, 4, 4, 3), frame_correlation=1.0)
  config = config_lib.diffusion_config()
  for bad in (-0.1, 1.0, 1.5):
    config.frame_noise_correlation = bad
    with pytest.raises(ValueError, match="diffusion.frame_noise_correlation"):
      config_lib.validate(config)


def _identity_x0_sample(rho, key=1):
  """One sampling step of a model predicting x0 = x_t: the output is the start noise."""
  config = config_lib.diffusion_config()
  config.update(dict(prediction="x0", guidance=1.0, thresholding="none", sample_steps=1,
                     frame_noise_correlation=rho))
  shape = (32, 3, 8, 8, 3)
  emb, mask = guidance.null_text(4, 3)
  text = jnp.broadcast_to(emb, (32, 4, 3)), jnp.broadcast_to(mask, (32, 4))
  return samplers.sample(jax.random.key(key), lambda x, *_: x, shape, *text, emb, mask,
                         config=config), shape


def test_sampling_starts_from_correlated_noise():
  out, shape = _identity_x0_sample(0.6)
  assert abs(_frame_correlation(out) - 0.6) < 0.05
  independent, _ = _identity_x0_sample(0.0)
  np.testing.assert_array_equal(
      independent, jax.random.normal(jax.random.split(jax.random.key(1))[0], shape))


def test_training_noise_correlates_across_frames():
  """The loss's x_t at t ~ 1 is nearly pure noise: its frames correlate with rho."""
  config = config_lib.diffusion_config()
  config.update(dict(cond_drop=0.0, frame_noise_correlation=0.7))
  seen = {}

  def denoise(x_t, cond, text_emb, text_mask):
    seen["x_t"] = x_t
    return jnp.zeros_like(x_t)

  x0 = jnp.zeros((32, 3, 8, 8, 3))
  emb, mask = guidance.null_text(4, 3)
  loss_lib.diffusion_loss(jax.random.key(0), denoise, x0, jnp.broadcast_to(emb, (32, 4, 3)),
                          jnp.broadcast_to(mask, (32, 4)), config)
  # x0 = 0, so x_t = sigma * eps: the per-clip scale does not change the correlation.
  assert abs(_frame_correlation(seen["x_t"]) - 0.7) < 0.05
