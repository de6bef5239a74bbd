"""Tests for the DDIM and DDPM samplers with analytic (oracle) denoisers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import config as config_lib
from stunet.diffusion import guidance
from stunet.diffusion import parameterization as param
from stunet.diffusion import samplers
from stunet.diffusion import schedules


def _config(**overrides):
  config = config_lib.diffusion_config()
  config.noise_cond = "logsnr"  # oracles read the noise level from noise_cond
  config.guidance = 1.0
  config.thresholding = "none"
  config.update(overrides)
  return config


def _oracle(x0_of, prediction):
  """Denoiser returning the ``prediction``-type output implied by ``x0_of(x_t, alpha, sigma)``."""

  def denoise(x_t, logsnr, text_emb, text_mask):
    del text_emb, text_mask
    alpha, sigma = (schedules.expand_to(a, x_t) for a in schedules.alpha_sigma(logsnr))
    x0 = x0_of(x_t, alpha, sigma)
    eps = param.eps_from_x0(x_t, x0, alpha, sigma)
    return param.training_target(x0, eps, alpha, sigma, prediction)

  return denoise


def _text(b):
  emb, mask = guidance.null_text(4, 3)
  return jnp.broadcast_to(emb, (b, 4, 3)), jnp.broadcast_to(mask, (b, 4)), emb, mask


def _run(config, denoise, shape, key=0, **kwargs):
  return samplers.sample(jax.random.key(key), denoise, shape, *_text(shape[0]), config=config,
                         **kwargs)


# Gaussian data x0 ~ N(MU, TAU^2) per pixel has the closed-form optimal denoiser
# E[x0 | x_t] = MU + alpha TAU^2 / (alpha^2 TAU^2 + sigma^2) (x_t - alpha MU), so a correct
# sampler must reproduce the data distribution (up to an O(1/steps) bias in the spread).
MU, TAU = 0.3, 0.5


def _gaussian_posterior_mean(x_t, alpha, sigma):
  return MU + alpha * TAU**2 / (alpha**2 * TAU**2 + sigma**2) * (x_t - alpha * MU)


@pytest.fixture(scope="module")
def gaussian_samples():
  shape = (256, 4, 4, 3)
  out = {}
  for sampler, eta, steps in (("ddim", 0.0, 50), ("ddpm", 1.0, 200)):
    config = _config(sampler=sampler, eta=eta, sample_steps=steps)
    run = jax.jit(functools.partial(
        _run, config, _oracle(_gaussian_posterior_mean, "v"), shape))
    out[sampler] = np.asarray(run())
  return out


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samples_follow_the_gaussian_data_distribution(gaussian_samples, sampler):
  x = gaussian_samples[sampler]
  assert abs(x.mean() - MU) < 0.02, x.mean()
  assert abs(x.std() - TAU) < 0.02, x.std()


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 0.5), ("ddpm", 1.0)])
@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_oracle_x0_denoiser_recovers_x0(sampler, eta, prediction):
  x0 = jax.random.uniform(jax.random.key(3), (2, 3, 4, 4, 3), minval=-1, maxval=1)  # video
  denoise = _oracle(lambda x_t, a, s: x0, prediction)
  out = _run(_config(sampler=sampler, eta=eta, sample_steps=8, prediction=prediction),
             denoise, x0.shape)
  np.testing.assert_allclose(out, x0, atol=1e-5)


def test_ddpm_equals_ddim_with_eta_one():
  # Use an imperfect denoiser so the step formulas, not the oracle, are compared.
  denoise = _oracle(lambda x_t, a, s: jnp.tanh(x_t), "v")
  shape = (2, 8, 8, 3)
  ddpm = _run(_config(sampler="ddpm", sample_steps=12), denoise, shape, key=4)
  ddim = _run(_config(sampler="ddim", eta=1.0, sample_steps=12), denoise, shape, key=4)
  np.testing.assert_allclose(ddpm, ddim, atol=1e-4)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 1.0)])
def test_deterministic_per_key_and_different_across_keys(sampler, eta):
  denoise = _oracle(lambda x_t, a, s: jnp.tanh(x_t), "v")
  config = _config(sampler=sampler, eta=eta, sample_steps=6)
  run = jax.jit(lambda key: samplers.sample(key, denoise, (2, 4, 4, 3), *_text(2),
                                            config=config))
  a = np.asarray(run(jax.random.key(0)))
  b = np.asarray(run(jax.random.key(0)))
  c = np.asarray(run(jax.random.key(1)))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-2


def test_callback_sees_every_step_and_the_result():
  seen = []
  denoise = _oracle(lambda x_t, a, s: jnp.tanh(x_t), "v")
  out = jax.jit(lambda: _run(_config(sample_steps=5), denoise, (1, 2, 2, 1),
                             callback=lambda step, x: seen.append((int(step), np.asarray(x)))))()
  jax.effects_barrier()
  assert [s for s, _ in seen] == [1, 2, 3, 4, 5]
  np.testing.assert_array_equal(seen[-1][1], out)


def test_time_grid_and_sdedit_start():
  seen = []

  def denoise(x_t, noise_cond, text_emb, text_mask):
    jax.debug.callback(lambda c: seen.append(float(c[0])), noise_cond)
    return jnp.zeros_like(x_t)

  _run(_config(noise_cond="time", sample_steps=4), denoise, (1, 2, 2, 1),
       x_init=jnp.zeros((1, 2, 2, 1)), t_start=0.5)
  jax.effects_barrier()
  np.testing.assert_allclose(seen, [500.0, 375.0, 250.0, 125.0], rtol=1e-6)


def test_sdedit_keeps_the_input_at_low_noise():
  # Starting at small t from x_init, a denoiser that knows the input returns it exactly,
  # while the starting point itself is only slightly noised.
  x_init = jax.random.uniform(jax.random.key(5), (2, 3, 4, 4, 3), minval=-1, maxval=1)
  denoise = _oracle(lambda x_t, a, s: x_init, "v")
  out = _run(_config(sample_steps=3), denoise, x_init.shape, x_init=x_init, t_start=0.2)
  np.testing.assert_allclose(out, x_init, atol=1e-5)


def test_guidance_and_thresholding_apply_inside_the_loop():
  # Guidance w extrapolates away from the null text; dynamic thresholding must keep it in range.
  def denoise(x_t, logsnr, text_emb, text_mask):
    target = 3.0 * jnp.sum(text_emb, axis=(1, 2))[:, None, None, None] * jnp.ones_like(x_t)
    alpha, sigma = (schedules.expand_to(a, x_t) for a in schedules.alpha_sigma(logsnr))
    eps = param.eps_from_x0(x_t, target, alpha, sigma)
    return param.training_target(target, eps, alpha, sigma, "v")

  emb = jnp.full((2, 4, 3), 1.0 / 12)  # conditional x0 = 3, null x0 = 0
  mask = jnp.ones((2, 4), bool)
  null_emb, null_mask = guidance.null_text(4, 3)
  key = jax.random.key(0)
  plain = samplers.sample(key, denoise, (2, 4, 4, 3), emb, mask, null_emb, null_mask,
                          config=_config(sample_steps=4), guidance=2.0)
  np.testing.assert_allclose(plain, 6.0, atol=1e-4)
  clipped = samplers.sample(key, denoise, (2, 4, 4, 3), emb, mask, null_emb, null_mask,
                            config=_config(sample_steps=4, thresholding="dynamic"),
                            guidance=2.0)
  assert float(jnp.abs(clipped).max()) <= 1.0 + 1e-6


def test_bad_arguments_are_named():
  denoise = _oracle(lambda x_t, a, s: x_t, "v")
  with pytest.raises(ValueError, match="diffusion.sampler"):
    _run(_config(), denoise, (1, 2, 2, 1), sampler="euler")
  with pytest.raises(ValueError, match="diffusion.sample_steps"):
    _run(_config(), denoise, (1, 2, 2, 1), steps=0)
  with pytest.raises(ValueError, match="t_start"):
    _run(_config(), denoise, (1, 2, 2, 1), t_start=0.0)
  with pytest.raises(ValueError, match="x_init shape"):
    _run(_config(), denoise, (1, 2, 2, 1), x_init=jnp.zeros((1, 2, 2, 3)), t_start=0.5)
  with pytest.raises(ValueError, match="text_emb"):
    samplers.sample(jax.random.key(0), denoise, (3, 2, 2, 1), *_text(2), config=_config())
