"""Orbax checkpoints of a stage: state, data-iterator position and meta, saved together.

`workdir/<stage>/checkpoints/<step>/{state, data_iter, meta}`. Saves are asynchronous (the
device-to-host copy blocks, writing does not); `keep_last` newest checkpoints are kept, plus
every `keep_every`-th step for good. Restores go into an abstract state whose leaves carry the
*current* mesh's shardings, so a checkpoint written on 8 devices restores onto 4. Only JSON
and array files are written: nothing is pickled.

Replica-parallel saving (orbax splits a replicated array into one slice per replica, each
written by its own device) is used only where a replica's slice holds at least
`ckpt.replica_parallel_min_bytes`. For small arrays the split costs more than it saves: every
slice is an eager `slice` op, compiled once per shape, and a tiny state on 8 CPU devices spent
10.9 of its 12.1 s save in it. Orbax keeps this setting in its process-wide type-handler
registry, so the last `Checkpointer` created sets it for the process. Restores do not depend on
it: either way the same arrays are written and read back.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.metadata import array_metadata_store

from stunet.train import config as config_lib


def use_replica_parallel_from(min_bytes: int) -> None:
  """Save jax.Arrays replica-parallel only where each replica's slice has `min_bytes` or more
  (orbax's `ArrayHandler`, otherwise as orbax registers it by default)."""
  current = ocp.type_handlers.get_type_handler(jax.Array)
  if getattr(current, "_min_slice_bytes_for_replica_parallel", None) == min_bytes:
    return
  handler = ocp.type_handlers.ArrayHandler(
      array_metadata_store=array_metadata_store.Store(),
      min_slice_bytes_for_replica_parallel=min_bytes)
  ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


class Checkpointer:
  """A stage's `CheckpointManager` (see module doc)."""

  def __init__(self, directory: str, ckpt_config, *, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    use_replica_parallel_from(
        ckpt_config.get("replica_parallel_min_bytes",
                        config_lib.ckpt_config().replica_parallel_min_bytes))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=ckpt_config.keep_last,
        keep_period=ckpt_config.keep_every or None,
        enable_async_checkpointing=bool(ckpt_config.async_save) and not read_only,
        create=not read_only, read_only=read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data_iter", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iter: Any, meta: dict) -> None:
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore_meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
        "meta"]

  def restore(self, step: int, abstract_state: Any, data_iter: Any = None) -> Any:
    """The state at `step` placed as `abstract_state`'s shardings say; `data_iter` (if
    given) is moved to the position saved with it."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    return self._manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
