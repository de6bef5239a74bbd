"""Tests for text dropout and classifier-free guided prediction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.diffusion import guidance


def _text(b=4, length=6, width=5):
  emb = jax.random.normal(jax.random.key(0), (b, length, width))
  mask = jnp.arange(length)[None, :] < jnp.array([[2], [6], [3], [1]])[:b]
  return emb, mask


def test_null_text_keeps_one_valid_position():
  emb, mask = guidance.null_text(6, 5)
  np.testing.assert_array_equal(emb, np.zeros((6, 5)))
  np.testing.assert_array_equal(mask, [True, False, False, False, False, False])


def test_drop_text_replaces_exactly_the_dropped_rows():
  emb, mask = _text()
  null_emb, null_mask = guidance.null_text(6, 5)
  out_emb, out_mask, dropped = guidance.drop_text(
      jax.random.key(3), emb, mask, 0.5, null_emb, null_mask)
  for i, d in enumerate(np.asarray(dropped)):
    np.testing.assert_array_equal(out_emb[i], null_emb if d else emb[i])
    np.testing.assert_array_equal(out_mask[i], null_mask if d else mask[i])


def test_drop_rate_is_statistically_right():
  b, p = 8192, 0.1
  emb = jnp.ones((b, 2, 3))
  mask = jnp.ones((b, 2), bool)
  null_emb, null_mask = guidance.null_text(2, 3)
  _, _, dropped = guidance.drop_text(jax.random.key(7), emb, mask, p, null_emb, null_mask)
  rate = float(jnp.mean(dropped))
  assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / b), rate
  _, _, none = guidance.drop_text(jax.random.key(7), emb, mask, 0.0, null_emb, null_mask)
  _, _, every = guidance.drop_text(jax.random.key(7), emb, mask, 1.0, null_emb, null_mask)
  assert not bool(none.any()) and bool(every.all())


def test_drop_text_errors_name_the_problem():
  emb, mask = _text()
  null_emb, null_mask = guidance.null_text(6, 5)
  with pytest.raises(ValueError, match="diffusion.cond_drop"):
    guidance.drop_text(jax.random.key(0), emb, mask, 1.5, null_emb, null_mask)
  wrong_emb, _ = guidance.null_text(7, 5)
  with pytest.raises(ValueError, match="null_emb"):
    guidance.drop_text(jax.random.key(0), emb, mask, 0.1, wrong_emb, null_mask)


class _CountingDenoiser:
  """Prediction depends on the text, so cond and uncond differ; counts model calls."""

  def __init__(self):
    self.calls = []

  def __call__(self, x_t, noise_cond, text_emb, text_mask):
    self.calls.append(x_t.shape[0])
    text = jnp.sum(text_emb * text_mask[..., None], axis=(1, 2))  # b
    return x_t * 0.5 + (text + noise_cond)[:, None, None, None]


@pytest.fixture(scope="module")
def guided_inputs():
  emb, mask = _text()
  x = jax.random.normal(jax.random.key(1), (4, 3, 3, 2))
  noise_cond = jnp.linspace(0.0, 1.0, 4)
  null_emb = 0.3 * jnp.ones((6, 5))
  null_mask = guidance.null_text(6, 5)[1]
  return x, noise_cond, emb, mask, null_emb, null_mask


def test_guidance_one_is_conditional_and_zero_unconditional(guided_inputs):
  x, noise_cond, emb, mask, null_emb, null_mask = guided_inputs
  model = _CountingDenoiser()
  cond = model(x, noise_cond, emb, mask)
  uncond = model(x, noise_cond, jnp.broadcast_to(null_emb, emb.shape),
                 jnp.broadcast_to(null_mask, mask.shape))
  for w, expected in ((1.0, cond), (0.0, uncond)):
    out = guidance.guided_prediction(model, x, noise_cond, emb, mask, null_emb, null_mask, w)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # Traced w = 1 / 0 goes through the batched path and must agree.
    traced = jax.jit(lambda w: guidance.guided_prediction(
        model, x, noise_cond, emb, mask, null_emb, null_mask, w))(w)
    np.testing.assert_allclose(traced, expected, rtol=1e-5, atol=1e-6)


def test_guidance_combines_in_one_batched_call(guided_inputs):
  x, noise_cond, emb, mask, null_emb, null_mask = guided_inputs
  model = _CountingDenoiser()
  cond = model(x, noise_cond, emb, mask)
  uncond = model(x, noise_cond, jnp.broadcast_to(null_emb, emb.shape),
                 jnp.broadcast_to(null_mask, mask.shape))
  model.calls.clear()
  out = guidance.guided_prediction(model, x, noise_cond, emb, mask, null_emb, null_mask, 4.0)
  assert model.calls == [8]
  np.testing.assert_allclose(out, uncond + 4.0 * (cond - uncond), rtol=1e-5, atol=1e-5)


def test_interleave_puts_each_examples_rows_side_by_side():
  a, b = jnp.arange(3.0)[:, None], 10 + jnp.arange(3.0)[:, None]
  np.testing.assert_array_equal(guidance.interleave(a, b)[:, 0], [0, 10, 1, 11, 2, 12])


def test_per_example_conditioning_follows_the_doubled_batch(guided_inputs):
  """A conditioned model (SSR's low-resolution clip, a conditional-sampling mask) repeats its
  per-example input to the doubled batch; each example must meet its own input in both its
  conditional and its null-text row."""
  from stunet.diffusion import multidiffusion  # pylint: disable=g-import-not-at-top
  x, noise_cond, emb, mask, null_emb, null_mask = guided_inputs
  cond = jax.random.normal(jax.random.key(5), x.shape)
  base = _CountingDenoiser()

  def conditioned(x_t, noise_cond, text_emb, text_mask):
    c = multidiffusion.repeat_to_batch(cond, x_t.shape[0], "cond")
    return base(x_t, noise_cond, text_emb, text_mask) * c

  out = guidance.guided_prediction(conditioned, x, noise_cond, emb, mask, null_emb, null_mask,
                                   2.5)
  for i in range(x.shape[0]):
    one = lambda e, m: base(x[i:i + 1], noise_cond[i:i + 1], e, m) * cond[i:i + 1]
    c = one(emb[i:i + 1], mask[i:i + 1])
    u = one(null_emb[None], null_mask[None])
    np.testing.assert_allclose(out[i:i + 1], u + 2.5 * (c - u), rtol=1e-5, atol=1e-5)


def test_guided_batch_stays_on_its_devices():
  """With the clips sharded over devices, doubling the batch moves nothing between them: the
  compiled step has no collective (concatenating [x; x] all-gathered x_t)."""
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from stunet.parallel import hlo  # pylint: disable=g-import-not-at-top
  n = 8
  if jax.device_count() < n:
    pytest.skip(f"needs {n} devices (tests/conftest.py forces 8 CPU devices)")
  mesh = jax.make_mesh((n,), ("data",), devices=jax.devices()[:n])
  rows = NamedSharding(mesh, P("data"))
  b, length, width = 2 * n, 6, 5
  x = jax.ShapeDtypeStruct((b, 4, 4, 3), jnp.float32, sharding=rows)
  noise = jax.ShapeDtypeStruct((b,), jnp.float32, sharding=rows)
  emb = jax.ShapeDtypeStruct((b, length, width), jnp.float32, sharding=rows)
  mask = jax.ShapeDtypeStruct((b, length), jnp.bool_, sharding=rows)
  null_emb, null_mask = guidance.null_text(length, width)

  def step(x, noise, emb, mask):
    return guidance.guided_prediction(_CountingDenoiser(), x, noise, emb, mask, null_emb,
                                      null_mask, 3.0)

  text = jax.jit(step, out_shardings=rows).lower(x, noise, emb, mask).compile().as_text()
  assert not hlo.collectives(text), [(c.kind, c.shape) for c in hlo.collectives(text)]
