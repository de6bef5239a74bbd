"""Conditional sampling and SDEdit with stand-in denoisers (SPEC §5)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.conditioning import conditional_sampling
from stunet.conditioning import masks
from stunet.conditioning import sdedit
from stunet.diffusion import config as config_lib
from stunet.diffusion import guidance
from stunet.diffusion import parameterization as param
from stunet.diffusion import schedules

B, T, H, W = 2, 6, 8, 8


def _config(**overrides):
  config = config_lib.diffusion_config()
  config.noise_cond = "logsnr"  # the stand-ins read the noise level from noise_cond
  config.update(overrides)
  return config


def _text(b):
  emb, mask = guidance.null_text(4, 3)
  return jax.random.normal(jax.random.key(9), (b, 4, 3)), jnp.ones((b, 4), bool), emb, mask


def _oracle_conditional(x, logsnr, text_emb, text_mask):
  """A 7-channel stand-in: x0 = the conditioning where known, a Gaussian-prior posterior
  mean ``alpha x_t`` shifted by the text elsewhere; returned as v."""
  del text_mask
  noisy, cond, mask = x[..., :3], x[..., 3:6], x[..., 6:]
  alpha, sigma = (schedules.expand_to(a, noisy) for a in schedules.alpha_sigma(logsnr))
  free = alpha * noisy + 0.3 * text_emb[:, :1, :1, None, None]
  x0 = mask * cond + (1 - mask) * free
  eps = param.eps_from_x0(noisy, x0, alpha, sigma)
  return param.v_from_x0_eps(x0, eps, alpha, sigma)


@pytest.fixture(scope="module")
def inputs():
  k = jax.random.split(jax.random.key(0), 2)
  image = jax.random.uniform(k[0], (B, H, W, 3), minval=-0.9, maxval=0.9)
  video = jax.random.uniform(k[1], (B, T, H, W, 3), minval=-0.9, maxval=0.9)
  return image, video


def _sample(cond, mask, key=0, **kw):
  # Static clipping: dynamic thresholding rescales the whole clip, known pixels included,
  # whenever the generated ones overshoot, so it would move the known region too.
  kw = dict(steps=8, sampler="ddpm", guidance=3.0, thresholding="static", **kw)
  fn = lambda k: conditional_sampling.sample(k, _oracle_conditional, cond, mask, *_text(B),
                                              config=_config(), **kw)
  return jax.jit(fn)(jax.random.key(key))


def test_image_to_video_reproduces_the_known_frame(inputs):
  image, _ = inputs
  cond, mask = masks.image_to_video(image, T)
  out = _sample(cond, mask)
  assert out.shape == (B, T, H, W, 3)
  np.testing.assert_allclose(out[:, 0], image, atol=1e-4)
  # The unknown frames were generated, not copied.
  assert float(jnp.abs(out[:, 1:] - image[:, None]).mean()) > 0.1


def test_cinemagraph_keeps_the_still_outside_the_region(inputs):
  image, _ = inputs
  region = masks.box_region(H, W, 2, 2, 4, 4)
  cond, mask = masks.cinemagraph(image, region, T)
  out = _sample(cond, mask)
  outside = ~np.asarray(region)
  for f in range(T):
    np.testing.assert_allclose(np.asarray(out[:, f])[:, outside], np.asarray(image)[:, outside],
                               atol=1e-4)
  inside = np.asarray(out[:, 1:])[:, :, np.asarray(region)]
  assert np.abs(inside - np.asarray(image)[:, None][:, :, np.asarray(region)]).mean() > 0.1


def test_composite_known_and_wrapper_errors(inputs):
  image, video = inputs
  cond, mask = masks.image_to_video(image, T)
  composed = conditional_sampling.composite_known(video, cond, mask)
  np.testing.assert_array_equal(composed[:, 0], image)
  np.testing.assert_array_equal(composed[:, 1:], video[:, 1:])
  with pytest.raises(ValueError, match=r"mask must be \[b, t, h, w, 1\]"):
    conditional_sampling.conditioned_denoise_fn(_oracle_conditional, cond, mask[..., 0])
  wrapped = conditional_sampling.conditioned_denoise_fn(_oracle_conditional, cond, mask)
  with pytest.raises(ValueError, match="must have the same"):
    wrapped(jnp.zeros((B, T - 1, H, W, 3)), jnp.zeros((B,)), *_text(B)[:2])


# ---- SDEdit ----------------------------------------------------------------------------------


def _prior(x, logsnr, text_emb, text_mask):
  """Unconditional stand-in: x0 = alpha x_t (a unit Gaussian prior) plus a text shift, as v."""
  del text_mask
  alpha, sigma = (schedules.expand_to(a, x) for a in schedules.alpha_sigma(logsnr))
  x0 = alpha * x + 0.1 * text_emb[:, :1, :1, None, None]
  return param.v_from_x0_eps(x0, param.eps_from_x0(x, x0, alpha, sigma), alpha, sigma)


@functools.partial(jax.jit, static_argnames="strength")
def _edit_jit(key, video, strength):
  return sdedit.sdedit(key, _prior, video, strength, *_text(B), config=_config(), steps=10,
                       sampler="ddpm", guidance=1.0, thresholding="none")


def _edit(video, strength, key=0):
  return _edit_jit(jax.random.key(key), video, strength=strength)


def test_sdedit_zero_strength_returns_the_input(inputs):
  _, video = inputs
  out = sdedit.sdedit(jax.random.key(0), _prior, video, 0.0, *_text(B), config=_config())
  np.testing.assert_array_equal(out, video)


def test_sdedit_is_deterministic_per_seed_and_follows_strength(inputs):
  _, video = inputs
  a, b, other = _edit(video, 0.5), _edit(video, 0.5), _edit(video, 0.5, key=1)
  np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(a - other).max()) > 1e-3
  assert sdedit.edit_steps(10, 0.5) == 5 and sdedit.edit_steps(10, 0.01) == 1
  # More strength, further from the input.
  dist = [float(jnp.abs(e - video).mean()) for e in (_edit(video, 0.1), a, _edit(video, 1.0))]
  assert dist[0] < dist[1] < dist[2], dist  # measured 0.17, 0.68, 0.87
  assert dist[0] < 0.25


def test_sdedit_errors(inputs):
  _, video = inputs
  for strength in (-0.1, 1.5):
    with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\]"):
      sdedit.sdedit(jax.random.key(0), _prior, video, strength, *_text(B), config=_config())
  with pytest.raises(ValueError, match=r"values must be in \[-1, 1\]"):
    sdedit.sdedit(jax.random.key(0), _prior, video * 200, 0.5, *_text(B), config=_config())
  with pytest.raises(ValueError, match="t_start is set by sdedit"):
    sdedit.sdedit(jax.random.key(0), _prior, video, 0.5, *_text(B), config=_config(),
                  t_start=0.3)
