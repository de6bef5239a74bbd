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


def _described(tree):
  """Every leaf of a boxed abstract tree as (path, shape, dtype, logical names)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))[0]
  return [(jax.tree_util.keystr(path), leaf.value.shape, leaf.value.dtype, tuple(leaf.names))
          if isinstance(leaf, nn.Partitioned) else
          (jax.tree_util.keystr(path), leaf.shape, leaf.dtype, None) for path, leaf in leaves]


@pytest.mark.parametrize("stage_name,temporal_text", [("t2i", "none"), ("video", "film"),
                                                      ("tsr", "none")])
def test_stage_abstract_state_is_that_of_the_traced_initialiser(stage_name, temporal_text):
  """`StageSetup.boxed_abstract_state` (built from the parameter shapes, without tracing the
  model again) is `jax.eval_shape(boxed_init)`: same leaves, shapes, dtypes and logical axis
  names, hence the same restore targets and shardings on any mesh."""
  from stunet.parallel import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from stunet.train import build  # pylint: disable=g-import-not-at-top
  from stunet.train import stages  # pylint: disable=g-import-not-at-top
  from tests.train.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(two_levels=True, mesh_shape=(2, 4, 1))
  config.model.temporal_text = temporal_text
  setup = build.build_stage(config, stages.get_stage(stage_name))
  traced = jax.eval_shape(setup.boxed_init, jax.random.key(0))
  assert _described(setup.boxed_abstract_state) == _described(traced)
  assert setup.boxed_abstract_state is setup.boxed_abstract_state  # traced once per stage
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices())
  target = setup.abstract_state(mesh)
  expected = state_lib.abstract_state(setup.boxed_init, mesh, setup.rules, jax.random.key(0))
  assert jax.tree.structure(target) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(expected)):
    assert (a.shape, a.dtype, a.sharding) == (b.shape, b.dtype, b.sharding)
