"""`restore.restore_params`: EMA or raw params of a saved stage, and the errors users meet."""

import jax
import numpy as np
import pytest

from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import checkpoint as checkpoint_lib
from stunet.train import restore
from stunet.train import stages as stages_lib
from tests.train.conftest import tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """(directory, setup, mesh, state) of a fresh t2i state saved at steps 3 and 5."""
  config = tiny_config(two_levels=True)
  config.mesh.shape = (1, 1, 1)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  setup = build_lib.build_stage(config, stages_lib.get_stage("t2i"))
  state, _ = setup.create_state(mesh, jax.random.key(0))
  state = state.replace(ema_params=jax.tree.map(lambda x: x + 1, state.ema_params))
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
