"""Tests for the training loss: forward process moments, targets, weightings, text dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import config as config_lib
from stunet.diffusion import loss
from stunet.diffusion import parameterization as param
from stunet.diffusion import schedules


def _config(**overrides):
  config = config_lib.diffusion_config()
  config.noise_cond = "logsnr"  # lets test denoisers read the noise level directly
  config.cond_drop = 0.0
  config.update(overrides)
  return config


def _text(b, length=4, width=3):
  return jnp.ones((b, length, width)), jnp.ones((b, length), bool)


class _Recorder:
  """Stands in for the model: records its inputs, returns a fixed prediction."""

  def __init__(self, fn=None):
    self.fn = fn
    self.inputs = None

  def __call__(self, x_t, noise_cond, text_emb, text_mask):
    self.inputs = (x_t, noise_cond, text_emb, text_mask)
    return jnp.zeros_like(x_t) if self.fn is None else self.fn(x_t, noise_cond)


def test_low_discrepancy_times_are_evenly_spaced():
  t = np.sort(np.asarray(loss.sample_times(jax.random.key(0), 16)))
  np.testing.assert_allclose(np.diff(t), 1 / 16, atol=1e-6)
  assert t.min() >= 0 and t.max() < 1
  u = np.asarray(loss.sample_times(jax.random.key(0), 16, "uniform"))
  assert u.shape == (16,) and not np.allclose(np.diff(np.sort(u)), 1 / 16, atol=1e-3)
  with pytest.raises(ValueError, match="diffusion.time_sampling"):
    loss.sample_times(jax.random.key(0), 4, "sobol")


def test_forward_process_moments_match_the_schedule():
  b, shape = 48, (24, 24, 3)
  x0 = jnp.broadcast_to(jnp.linspace(-0.8, 0.8, b)[:, None, None, None], (b,) + shape)
  model = _Recorder()
  loss.diffusion_loss(jax.random.key(1), model, x0, *_text(b), _config())
  x_t, logsnr, _, _ = model.inputs
  alpha, sigma = (np.asarray(a) for a in schedules.alpha_sigma(logsnr))
  n = np.prod(shape)
  flat = np.asarray(x_t).reshape(b, -1)
  mean, var = flat.mean(-1), flat.var(-1)
  c = np.asarray(x0[:, 0, 0, 0])
  # Five standard errors of the empirical mean / variance of n Gaussian draws.
  assert np.all(np.abs(mean - alpha * c) < 5 * sigma / np.sqrt(n) + 1e-6)
  assert np.all(np.abs(var - sigma**2) < 5 * sigma**2 * np.sqrt(2 / n) + 1e-9)


def test_zero_prediction_loss_is_the_target_second_moment():
  # With x0 ~ N(0, 1), E[v^2] = alpha^2 + sigma^2 = 1 at every noise level.
  b = 64
  x0 = jax.random.normal(jax.random.key(2), (b, 2, 8, 8, 3))  # b t h w c
  per_example, aux = loss.diffusion_loss(jax.random.key(3), _Recorder(), x0, *_text(b),
                                         _config())
  assert per_example.shape == (b,)
  np.testing.assert_allclose(float(per_example.mean()), 1.0, atol=0.03)
  np.testing.assert_array_equal(aux["weight"], np.ones(b))
  np.testing.assert_array_equal(per_example, aux["mse"])


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_perfect_denoiser_has_near_zero_loss(prediction):
  b = 16
  x0 = jax.random.uniform(jax.random.key(4), (b, 8, 8, 3), minval=-1, maxval=1)

  def oracle(x_t, logsnr):
    alpha, sigma = (schedules.expand_to(a, x_t) for a in schedules.alpha_sigma(logsnr))
    eps = param.eps_from_x0(x_t, x0, alpha, sigma)
    return param.training_target(x0, eps, alpha, sigma, prediction)

  per_example, _ = loss.diffusion_loss(jax.random.key(5), _Recorder(oracle), x0, *_text(b),
                                       _config(prediction=prediction, time_sampling="uniform"))
  # eps recovered by dividing by sigma loses precision near t = 0; still tiny.
  assert float(per_example.max()) < 1e-3
  wrong, _ = loss.diffusion_loss(jax.random.key(5), _Recorder(lambda x, c: oracle(x, c) + 0.1),
                                 x0, *_text(b), _config(prediction=prediction))
  np.testing.assert_allclose(np.asarray(wrong), 0.01, rtol=0.1)


@pytest.mark.parametrize("weighting", ["v", "eps", "min_snr"])
def test_weighting_means_the_same_for_every_parameterization(weighting):
  # One wrong guess (x0_hat, eps_hat) consistent with x_t, scored under each parameterization:
  # the weighted losses must agree because a weighting is defined on the x0 error.
  k1, k2, k3 = jax.random.split(jax.random.key(6), 3)
  logsnr = jnp.linspace(-8.0, 8.0, 9)
  x0 = jax.random.uniform(k1, (9, 4, 4, 3), minval=-1, maxval=1)
  eps = jax.random.normal(k2, x0.shape)
  alpha, sigma = (schedules.expand_to(a, x0) for a in schedules.alpha_sigma(logsnr))
  x_t = alpha * x0 + sigma * eps
  x0_hat = x0 + 0.1 * jax.random.normal(k3, x0.shape)
  eps_hat = param.eps_from_x0(x_t, x0_hat, alpha, sigma)
  losses = {}
  for kind in ("v", "eps", "x0"):
    target = param.training_target(x0, eps, alpha, sigma, kind)
    guess = param.training_target(x0_hat, eps_hat, alpha, sigma, kind)
    mse = jnp.mean((guess - target)**2, axis=(1, 2, 3))
    losses[kind] = np.asarray(loss.loss_weight(logsnr, kind, weighting, 5.0) * mse)
  np.testing.assert_allclose(losses["v"], losses["x0"], rtol=1e-3)
  np.testing.assert_allclose(losses["eps"], losses["x0"], rtol=1e-3)
  mse_x0 = np.asarray(jnp.mean((x0_hat - x0)**2, axis=(1, 2, 3)))
  snr = np.exp(np.asarray(logsnr))
  x0_weight = {"v": snr + 1, "eps": snr, "min_snr": np.minimum(snr, 5.0)}[weighting]
  np.testing.assert_allclose(losses["x0"], x0_weight * mse_x0, rtol=1e-4)


def test_weighting_errors_and_none():
  np.testing.assert_array_equal(loss.loss_weight(jnp.array([-5.0, 5.0]), "v", "none"), [1, 1])
  with pytest.raises(ValueError, match="diffusion.loss_weighting"):
    loss.loss_weight(jnp.zeros(2), "v", "p2")


def test_text_dropout_uses_the_null_text():
  b = 2048
  x0 = jnp.zeros((b, 2, 2, 1))
  model = _Recorder()
  _, aux = loss.diffusion_loss(jax.random.key(8), model, x0, *_text(b, 4, 3),
                               _config(cond_drop=0.25))
  _, _, text_emb, text_mask = model.inputs
  dropped = np.asarray(aux["text_dropped"])
  assert abs(dropped.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / b)
  np.testing.assert_array_equal(np.asarray(text_emb)[dropped], 0.0)
  np.testing.assert_array_equal(np.asarray(text_mask)[dropped], [[True, False, False, False]] *
                                int(dropped.sum()))
  np.testing.assert_array_equal(np.asarray(text_emb)[~dropped], 1.0)


def test_noise_cond_time_is_scaled_time():
  b = 8
  model = _Recorder()
  _, aux = loss.diffusion_loss(jax.random.key(9), model, jnp.zeros((b, 4, 4, 3)), *_text(b),
                               _config(noise_cond="time"))
  np.testing.assert_allclose(model.inputs[1], 1000 * aux["t"], rtol=1e-6)


def test_shape_errors_are_clear():
  with pytest.raises(ValueError, match="text_emb"):
    loss.diffusion_loss(jax.random.key(0), _Recorder(), jnp.zeros((2, 4, 4, 3)), *_text(3),
                        _config())
  with pytest.raises(ValueError, match="denoise_fn returned shape"):
    loss.diffusion_loss(jax.random.key(0), _Recorder(lambda x, c: x[..., :1]),
                        jnp.zeros((2, 4, 4, 3)), *_text(2), _config())
