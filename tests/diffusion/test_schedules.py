"""Tests for the cosine log-SNR schedule, resolution shift and noise conditioning."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import config as config_lib
from stunet.diffusion import schedules


def test_endpoints_hit_the_clip_range_exactly():
  logsnr = schedules.cosine_logsnr(jnp.array([0.0, 1.0]), -15.0, 12.0)
  np.testing.assert_allclose(np.asarray(logsnr), [12.0, -15.0], atol=1e-4)


def test_symmetric_range_crosses_zero_at_half_time():
  # atan(e^-10) + atan(e^10) = pi/2, so t = 0.5 lands on tan(pi/4) = 1.
  np.testing.assert_allclose(float(schedules.cosine_logsnr(0.5, -20.0, 20.0)), 0.0, atol=1e-5)


def test_matches_unclipped_cosine_in_the_interior():
  # With a wide clip range the curve is -2 log tan(pi t / 2) up to the tiny angle offset.
  t = np.linspace(0.1, 0.9, 9)
  expected = -2.0 * np.log(np.tan(np.pi * t / 2))
  got = np.asarray(schedules.cosine_logsnr(jnp.asarray(t), -30.0, 30.0))
  np.testing.assert_allclose(got, expected, atol=1e-4)


def test_strictly_decreasing():
  logsnr = np.asarray(schedules.cosine_logsnr(jnp.linspace(0.0, 1.0, 1001)))
  assert np.all(np.diff(logsnr) < 0)


def test_bad_range_names_fields():
  with pytest.raises(ValueError, match="logsnr_min"):
    schedules.cosine_logsnr(0.5, 5.0, -5.0)


def test_alpha_sigma_variance_preserving_and_accurate_at_extremes():
  logsnr = jnp.array([-20.0, -3.0, 0.0, 3.0, 20.0])
  alpha, sigma = schedules.alpha_sigma(logsnr)
  np.testing.assert_allclose(np.asarray(alpha**2 + sigma**2), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(jnp.log(alpha**2 / sigma**2)), np.asarray(logsnr),
                             rtol=1e-5, atol=1e-5)
  # sigma at logsnr = 20 is sqrt(sigmoid(-20)) ~ 4.54e-5, not rounded to zero.
  np.testing.assert_allclose(float(sigma[-1]), math.sqrt(1 / (1 + math.exp(20))), rtol=1e-5)


def test_resolution_shift():
  assert schedules.resolution_shift(128, 128, 0) == 0.0
  np.testing.assert_allclose(schedules.resolution_shift(128, 128, 64), 2 * math.log(0.5))
  # Non-square frames count by pixels: 64x256 has the pixels of 128x128.
  np.testing.assert_allclose(schedules.resolution_shift(64, 256, 64), 2 * math.log(0.5))
  with pytest.raises(ValueError, match="shift_base_res"):
    schedules.resolution_shift(64, 64, -1)


def test_logsnr_fn_applies_the_shift_to_the_whole_curve():
  config = config_lib.diffusion_config()
  plain = schedules.logsnr_fn(config, 128, 128)
  config.shift_base_res = 64.0
  shifted = schedules.logsnr_fn(config, 128, 128)
  t = jnp.linspace(0, 1, 5)
  np.testing.assert_allclose(np.asarray(shifted(t) - plain(t)), 2 * math.log(0.5), atol=1e-5)
  config.schedule = "linear"
  with pytest.raises(ValueError, match="diffusion.schedule"):
    schedules.logsnr_fn(config, 8, 8)


def test_noise_cond_choices():
  t = jnp.array([0.0, 0.25, 1.0])
  logsnr = jnp.array([1.0, 2.0, 3.0])
  np.testing.assert_array_equal(np.asarray(schedules.noise_cond(t, logsnr, "time")),
                                [0.0, 250.0, 1000.0])
  np.testing.assert_array_equal(np.asarray(schedules.noise_cond(t, logsnr, "logsnr")),
                                [1.0, 2.0, 3.0])
  with pytest.raises(ValueError, match="diffusion.noise_cond"):
    schedules.noise_cond(t, logsnr, "sigma")


def test_spatial_size_is_rank_generic():
  assert schedules.spatial_size((2, 16, 32, 3)) == (16, 32)
  assert schedules.spatial_size((2, 8, 16, 32, 3)) == (16, 32)
  with pytest.raises(ValueError, match="shape"):
    schedules.spatial_size((16, 32, 3))
