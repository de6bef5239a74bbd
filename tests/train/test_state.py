"""The EMA update and its warm-up (issue 18: the EMA must forget the random init)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.train import optimizer
from stunet.train import state as state_lib


@pytest.mark.parametrize("step,expected", [(0, 0.1), (1, 2 / 11), (10, 0.55), (90, 0.91),
                                           (8990, 0.999), (100_000, 0.999)])
def test_warmup_decay_values(step, expected):
  decay = state_lib.ema_decay_at(0.999, jnp.int32(step), warmup=True)
  assert decay.dtype == jnp.float32
  assert float(decay) == float(np.float32(min(0.999, expected)))


def test_without_warmup_the_decay_is_the_configured_one():
  assert state_lib.ema_decay_at(0.999, jnp.int32(0), warmup=False) == 0.999


def test_warmup_forgets_the_init():
  """After 1000 updates towards a constant, the init's weight is prod(decay_n): 37% without
  the warm-up, under 1% with it."""
  def init_weight(warmup):
    decays = [float(state_lib.ema_decay_at(0.999, jnp.int32(n), warmup)) for n in range(1000)]
    return float(np.prod(decays, dtype=np.float64))
  assert 0.36 < init_weight(False) < 0.37
  assert init_weight(True) < 0.01


def test_ema_update_uses_the_decay_and_keeps_frozen_leaves_bitwise():
  ema = {"a": jnp.array([1.0, -0.0, 3.0]), "b": jnp.array([-0.0, 2.0])}
  params = {"a": jnp.array([3.0, 1.0, 5.0]), "b": jnp.array([0.0, 7.0])}
  labels = {"a": optimizer.TRAIN, "b": optimizer.FROZEN}
  decay = state_lib.ema_decay_at(0.999, jnp.int32(0))  # 0.1
  new = jax.jit(lambda e, p, d: state_lib.ema_update(e, p, d, labels))(ema, params, decay)
  d = np.float32(0.1)
  np.testing.assert_array_equal(np.asarray(new["a"]),
                                d * np.asarray(ema["a"]) + (1 - d) * np.asarray(params["a"]))
  assert np.asarray(new["b"]).tobytes() == np.asarray(ema["b"]).tobytes()  # -0.0 kept
