"""The diffusion functions driving a real (tiny) Flax model: jit, grad and batch sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from stunet.diffusion import config as config_lib
from stunet.diffusion import guidance
from stunet.diffusion import loss
from stunet.diffusion import samplers


class TinyDenoiser(nn.Module):
  """Per-pixel MLP conditioned on the noise level and the mean-pooled text."""

  @nn.compact
  def __call__(self, x, noise_cond, text_emb, text_mask, train=False):
    pooled = (jnp.sum(text_emb * text_mask[..., None], 1)
              / jnp.maximum(jnp.sum(text_mask, 1, keepdims=True), 1))  # b d
    cond = nn.Dense(8)(jnp.concatenate([pooled, jnp.sin(noise_cond[:, None] / 100.0)], -1))
    cond = cond.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (8,))
    h = nn.silu(nn.Dense(8)(x) + cond)
    return nn.Dense(x.shape[-1])(h)


@pytest.fixture(scope="module")
def setup():
  model = TinyDenoiser()
  x0 = jax.random.uniform(jax.random.key(0), (8, 2, 4, 4, 3), minval=-1, maxval=1)  # b t h w c
  emb = jax.random.normal(jax.random.key(1), (8, 5, 6))
  mask = jnp.arange(5)[None] < jnp.arange(1, 9)[:, None] % 5 + 1
  variables = model.init(jax.random.key(2), x0, jnp.zeros(8), emb, mask)
  config = config_lib.diffusion_config()
  config.sample_steps = 4
  return model, variables, x0, emb, mask, config


def test_loss_is_jittable_differentiable_and_deterministic(setup):
  model, variables, x0, emb, mask, config = setup

  @jax.jit
  def loss_and_grad(params, rng):
    def mean_loss(params):
      denoise = lambda *a: model.apply({"params": params}, *a)
      per_example, _ = loss.diffusion_loss(rng, denoise, x0, emb, mask, config)
      return per_example.mean()
    return jax.value_and_grad(mean_loss)(params)

  l1, g1 = loss_and_grad(variables["params"], jax.random.key(3))
  l2, g2 = loss_and_grad(variables["params"], jax.random.key(3))
  l3, _ = loss_and_grad(variables["params"], jax.random.key(4))
  assert np.isfinite(float(l1)) and float(l1) > 0
  assert float(l1) == float(l2) and float(l1) != float(l3)
  jax.tree.map(np.testing.assert_array_equal, g1, g2)
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g1))


def test_sampling_with_batch_sharded_over_8_devices_matches_one_device(setup):
  model, variables, _, emb, mask, config = setup
  null_emb, null_mask = guidance.null_text(5, 6)
  shape = (8, 2, 4, 4, 3)

  def run(variables, key, emb, mask):
    denoise = lambda *a: model.apply(variables, *a)
    return samplers.sample(key, denoise, shape, emb, mask, null_emb, null_mask, config=config)

  key = jax.random.key(5)
  single = np.asarray(jax.jit(run)(variables, key, emb, mask))
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  batch = NamedSharding(mesh, P("data"))
  sharded = jax.jit(run, in_shardings=(NamedSharding(mesh, P()), None, batch, batch),
                    out_shardings=batch)(variables, key, emb, mask)
  assert sharded.sharding == batch
  np.testing.assert_allclose(np.asarray(sharded), single, atol=1e-5)
  assert np.abs(single).max() <= 1.0 + 1e-6  # dynamic thresholding is on by default
