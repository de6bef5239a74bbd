"""`checkpoint.Checkpointer`: replica-parallel saving only for large slices, same arrays back."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stunet.train import checkpoint as checkpoint_lib
from stunet.train import config as config_lib
from tests.train.conftest import tiny_config


@pytest.fixture
def restore_handler():
  """Puts back whatever jax.Array handler orbax had before the test."""
  before = ocp.type_handlers.get_type_handler(jax.Array)
  yield
  ocp.type_handlers.register_type_handler(jax.Array, before, override=True)


def _state(devices):
  """Replicated arrays of 16 KiB (small) and 8 MiB (large: 1 MiB per replica on 8 devices), plus one sharded over devices."""
  mesh = Mesh(np.array(devices), ("d",))
  rng = np.random.default_rng(0)
  put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))
  return {"small": put(rng.normal(size=(64, 64)).astype(np.float32), P()),
          "large": put(rng.normal(size=(2048, 1024)).astype(np.float32), P()),
          "sharded": put(rng.normal(size=(32, 8)).astype(np.float32), P("d"))}


def _ckpt_config(**overrides):
  c = config_lib.ckpt_config()
  c.update(overrides)
  c.async_save = False
  return c


def _save(directory, ckpt_config, state):
  ckpt = checkpoint_lib.Checkpointer(directory, ckpt_config)
  ckpt.save(1, state, None, meta={"step": 1})
  ckpt.close()


def _restore(directory, ckpt_config, like):
  ckpt = checkpoint_lib.Checkpointer(directory, ckpt_config, read_only=True)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          like)
  restored = ckpt.restore(1, abstract)
  ckpt.close()
  return restored


def test_checkpointer_registers_the_configured_threshold(restore_handler, tmp_path):
  del restore_handler
  checkpoint_lib.Checkpointer(str(tmp_path / "a"), _ckpt_config(replica_parallel_min_bytes=123))
  handler = ocp.type_handlers.get_type_handler(jax.Array)
  assert handler._min_slice_bytes_for_replica_parallel == 123  # pylint: disable=protected-access
  # A config saved before the field existed gets the default.
  old = _ckpt_config()
  del old["replica_parallel_min_bytes"]
  checkpoint_lib.Checkpointer(str(tmp_path / "b"), old)
  handler = ocp.type_handlers.get_type_handler(jax.Array)
  assert (handler._min_slice_bytes_for_replica_parallel  # pylint: disable=protected-access
          == config_lib.ckpt_config().replica_parallel_min_bytes)


@pytest.mark.parametrize("save_bytes,restore_bytes", [
    (1 << 20, 1 << 20),  # the default: only "large" is written replica-parallel
    (0, 1 << 20),        # written as orbax does by default (every array replica-parallel)
    (1 << 20, 0),
])
def test_same_arrays_back_onto_eight_and_four_devices(restore_handler, tmp_path, save_bytes,
                                                      restore_bytes):
  del restore_handler
  state = _state(jax.devices()[:8])
  directory = str(tmp_path / "ckpt")
  _save(directory, _ckpt_config(replica_parallel_min_bytes=save_bytes), state)
  for devices in (jax.devices()[:8], jax.devices()[:4]):
    like = _state(devices)
    restored = _restore(directory, _ckpt_config(replica_parallel_min_bytes=restore_bytes), like)
    for name, value in state.items():
      assert restored[name].sharding == like[name].sharding
      np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(value))


def test_a_bad_threshold_is_named():
  config = tiny_config()
  config_lib.validate(config)
  config.ckpt.replica_parallel_min_bytes = -1
  with pytest.raises(ValueError, match="ckpt.replica_parallel_min_bytes"):
    config_lib.validate(config)
