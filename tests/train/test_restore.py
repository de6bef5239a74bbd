"""`restore.restore_params`: EMA or raw params of a saved stage, and the errors users meet."""

import jax
import numpy as np
import pytest

from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import checkpoint as checkpoint_lib
from stunet.train import optimizer as optimizer_lib
from stunet.train import restore
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib
from tests.train.conftest import tiny_config


def _distinct_state(setup, mesh):
  """A state in `setup`'s layout whose leaves all differ, EMA = params + 1 (no init compiled:
  restores only move values)."""
  target = setup.abstract_state(mesh)
  counter = iter(range(1, 10**6))

  def fill(x):
    n = next(counter)
    values = (np.arange(np.prod(x.shape), dtype=np.float64) % 97 + n / 7).reshape(x.shape)
    return jax.device_put(values.astype(x.dtype), x.sharding)
  state = jax.tree.map(fill, target)
  return state.replace(ema_params=state_lib.mask_like(
      jax.tree.map(lambda x: x + 1, state.params), state.ema_params))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """(directory, setup, mesh, state) of a fresh t2i state saved at steps 3 and 5."""
  config = tiny_config(two_levels=True)
  config.mesh.shape = (1, 1, 1)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  setup = build_lib.build_stage(config, stages_lib.get_stage("t2i"))
  state = _distinct_state(setup, mesh)
  directory = str(tmp_path_factory.mktemp("ckpt"))
  ckpt = checkpoint_lib.Checkpointer(directory, config.ckpt)
  for step in (3, 5):
    ckpt.save(step, state, None, meta={"step": step, "compared_fields": {"x": step}})
  ckpt.close()
  return directory, setup, mesh, state


def _equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_latest_ema_and_a_chosen_raw_step(saved):
  directory, setup, mesh, state = saved
  params, step = restore.restore_params(directory, setup, mesh)
  assert step == 5 and _equal(params, state.ema_params)
  params, step = restore.restore_params(directory, setup, mesh, step=3, which="raw")
  assert step == 3 and _equal(params, state.params)
  assert not _equal(state.params, state.ema_params)


def test_check_sees_the_metadata_before_any_array_is_read(saved):
  directory, setup, mesh, _ = saved
  seen = []
  restore.restore_params(directory, setup, mesh, step=3,
                         check=lambda meta, step: seen.append((meta["compared_fields"], step)))
  assert seen == [({"x": 3}, 3)]

  def refuse(meta, step):
    raise ValueError(f"refused step {step}")
  with pytest.raises(ValueError, match="refused step 5"):
    restore.restore_params(directory, setup, mesh, check=refuse)


def test_errors_name_what_is_missing(saved, tmp_path):
  directory, setup, mesh, _ = saved
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 4 .*saved steps: \[3, 5\]"):
    restore.restore_params(directory, setup, mesh, step=4)
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    restore.restore_params(str(tmp_path / "absent"), setup, mesh)
  with pytest.raises(RuntimeError, match="train it first"):
    restore.restore_params(str(tmp_path / "absent"), setup, mesh,
                           missing=lambda: RuntimeError("train it first"))
  with pytest.raises(ValueError, match="which must be one of"):
    restore.restore_params(directory, setup, mesh, which="best")


@pytest.fixture(scope="module")
def video_state():
  """(setup, mesh, state) of a fresh video stage: spatial and text leaves frozen."""
  config = tiny_config(two_levels=True)
  config.mesh.shape = (1, 1, 1)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  setup = build_lib.build_stage(config, stages_lib.get_stage("video"))
  return setup, mesh, _distinct_state(setup, mesh)


def test_frozen_leaves_are_held_once_and_the_ema_weights_merge_them(video_state):
  setup, _, state = video_state
  labels = jax.tree.leaves(setup.labels)
  n_train = sum(l == optimizer_lib.TRAIN for l in labels)
  assert 0 < n_train < len(labels)
  assert len(jax.tree.leaves(state.ema_params)) == n_train
  assert len(jax.tree.leaves(state.opt_state)) < 2 * len(labels)
  for label, p, e in zip(labels, jax.tree.leaves(state.params),
                         jax.tree.leaves(state.ema_weights)):
    np.testing.assert_array_equal(e, p if label == optimizer_lib.FROZEN else p + 1)


def _legacy_save(directory, config_ckpt, state, meta):
  """Saves `state` as checkpoints written before frozen leaves left the EMA (a full EMA,
  no 'state_format' in the meta)."""
  legacy = state.replace(ema_params=state.ema_weights)
  ckpt = checkpoint_lib.Checkpointer(directory, config_ckpt)
  ckpt.save(2, legacy, None, meta=meta)
  ckpt.close()


def test_a_checkpoint_with_a_full_ema_restores_into_the_lean_state(video_state, tmp_path):
  setup, mesh, state = video_state
  directory = str(tmp_path / "legacy")
  _legacy_save(directory, setup.config.ckpt, state, {"step": 2, "compared_fields": {}})
  ckpt = checkpoint_lib.Checkpointer(directory, setup.config.ckpt, read_only=True)
  restored = restore.restore_state(ckpt, 2, setup, mesh)
  ckpt.close()
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  assert _equal(restored, state)
  params, _ = restore.restore_params(directory, setup, mesh)
  assert _equal(params, state.ema_weights)


def test_a_lean_checkpoint_is_marked_and_restores_bitwise(video_state, tmp_path):
  setup, mesh, state = video_state
  directory = str(tmp_path / "lean")
  ckpt = checkpoint_lib.Checkpointer(directory, setup.config.ckpt)
  ckpt.save(2, state, None, meta={"step": 2, "state_format": state_lib.STATE_FORMAT})
  ckpt.close()
  ckpt = checkpoint_lib.Checkpointer(directory, setup.config.ckpt, read_only=True)
  restored = restore.restore_state(ckpt, 2, setup, mesh)
  ckpt.close()
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  assert _equal(restored, state)
  # Without the marker the lean layout is not mistaken for a legacy one silently.
  ckpt = checkpoint_lib.Checkpointer(directory, setup.config.ckpt, read_only=True)
  with pytest.raises(ValueError, match=r"step 2 .* state_format=1"):
    restore.restore_state(ckpt, 2, setup, mesh, meta={"step": 2})
  ckpt.close()
