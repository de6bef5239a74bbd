"""Tests for exact conversions between x0, epsilon and v."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import parameterization as param
from stunet.diffusion import schedules


@pytest.fixture(scope="module")
def sample():
  k1, k2 = jax.random.split(jax.random.key(0))
  x0 = jax.random.uniform(k1, (7, 3, 4, 4, 3), minval=-1, maxval=1)  # b t h w c
  eps = jax.random.normal(k2, x0.shape)
  logsnr = jnp.array([-20.0, -8.0, -2.0, 0.0, 2.0, 8.0, 20.0])
  alpha, sigma = schedules.alpha_sigma(logsnr)
  alpha, sigma = schedules.expand_to(alpha, x0), schedules.expand_to(sigma, x0)
  x_t = alpha * x0 + sigma * eps
  return x0, eps, alpha, sigma, x_t


def test_v_round_trips_to_x0_and_eps(sample):
  x0, eps, alpha, sigma, x_t = sample
  v = param.v_from_x0_eps(x0, eps, alpha, sigma)
  np.testing.assert_allclose(param.x0_from_v(x_t, v, alpha, sigma), x0, atol=2e-6)
  np.testing.assert_allclose(param.eps_from_v(x_t, v, alpha, sigma), eps, atol=5e-6)


def test_eps_and_x0_invert_where_well_conditioned(sample):
  x0, eps, alpha, sigma, x_t = sample
  # x0 from eps divides by alpha, eps from x0 by sigma: check where each is not tiny.
  ok_alpha = np.asarray(alpha[:, 0, 0, 0, 0]) > 0.01
  ok_sigma = np.asarray(sigma[:, 0, 0, 0, 0]) > 0.01
  x0_back = param.x0_from_eps(x_t, eps, alpha, sigma)
  eps_back = param.eps_from_x0(x_t, x0, alpha, sigma)
  np.testing.assert_allclose(x0_back[ok_alpha], x0[ok_alpha], atol=1e-4)
  np.testing.assert_allclose(eps_back[ok_sigma], eps[ok_sigma], atol=1e-4)


@pytest.mark.parametrize("kind", ["v", "eps", "x0"])
def test_perfect_prediction_gives_true_x0_and_eps(sample, kind):
  x0, eps, alpha, sigma, x_t = sample
  target = param.training_target(x0, eps, alpha, sigma, kind)
  x0_hat, eps_hat = param.to_x0_eps(target, x_t, alpha, sigma, kind)
  # Mid-range noise levels only: eps/x0 predictions are ill-conditioned at the extremes.
  mid = slice(1, 6)
  np.testing.assert_allclose(x0_hat[mid], x0[mid], atol=1e-4)
  np.testing.assert_allclose(eps_hat[mid], eps[mid], atol=1e-4)
  # Whatever the kind, the implied pair reproduces x_t.
  np.testing.assert_allclose(alpha * x0_hat + sigma * eps_hat, x_t, atol=1e-5)


def test_v_is_a_rotation(sample):
  x0, eps, alpha, sigma, x_t = sample
  v = param.v_from_x0_eps(x0, eps, alpha, sigma)
  np.testing.assert_allclose(x_t**2 + v**2, x0**2 + eps**2, rtol=1e-5, atol=1e-5)


def test_unknown_prediction_named():
  with pytest.raises(ValueError, match="diffusion.prediction"):
    param.check_prediction("score")
