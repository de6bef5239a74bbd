"""One way to read a stage's weights back: the params (EMA or raw) of a saved checkpoint,
restored onto a mesh with the stage's shardings.

A stage that starts from its parent (`stunet.train.loop.load_parent_params`) and sampling
from a run (`stunet.sampling.sample_run`) both go through `restore_params`; they differ only in
what they say when nothing is saved and in what they check first.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax

from stunet.train import build as build_lib
from stunet.train import checkpoint as checkpoint_lib
from stunet.train import state as state_lib

WHICH = ("ema", "raw")


def restore_params(directory: str, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, *,
                   step: int | None = None, which: str = "ema",
                   missing: Callable[[], Exception] | None = None,
                   check: Callable[[dict, int], None] | None = None) -> tuple[Any, int]:
  """`(params, step)` of the checkpoints in `directory` at `step` (None = the latest).

  `setup` is the stage that wrote them (its abstract state is the restore target). With no
  checkpoint, `missing()` is raised (default: a FileNotFoundError naming the directory); a
  `step` not saved is a FileNotFoundError listing the saved ones. `check(meta, step)` sees the
  checkpoint's metadata (`compared_fields`, ...) before any array is read.
  """
  if which not in WHICH:
    raise ValueError(f"which must be one of {WHICH}, got {which!r}")
  def nothing_saved() -> Exception:
    return missing() if missing is not None else FileNotFoundError(
        f"no checkpoint in {directory}")

  if not os.path.isdir(directory):
    raise nothing_saved()
  ckpt = checkpoint_lib.Checkpointer(directory, setup.config.ckpt, read_only=True)
  try:
    latest = ckpt.latest_step()
    if latest is None:
      raise nothing_saved()
    if step is None:
      step = latest
    elif step not in ckpt.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; saved steps: "
                              f"{sorted(ckpt.all_steps())}")
    if check is not None:
      check(ckpt.restore_meta(step), step)
    state = restore_state(ckpt, step, setup, mesh)
  finally:
    ckpt.close()
  return (state.ema_weights if which == "ema" else state.params), step


def restore_state(ckpt: checkpoint_lib.Checkpointer, step: int, setup: build_lib.StageSetup,
                  mesh: jax.sharding.Mesh, data_iter: Any = None,
                  meta: dict | None = None) -> state_lib.TrainState:
  """The `TrainState` saved at `step`, placed with `setup`'s shardings on `mesh`.

  What the checkpoint lacks by design (a pre-trained text encoder, `StageSetup.saved_state`)
  is read from its files. A checkpoint written before frozen leaves left the EMA (its `meta`,
  read if not given, has no 'state_format') holds every leaf in params and EMA: that layout is
  read and the frozen EMA copies dropped, so older runs resume and sample as they did.
  """
  target = setup.abstract_state(mesh)
  if meta is None:
    meta = ckpt.restore_meta(step)
  state_format = meta.get("state_format", 1)
  if state_format >= state_lib.STATE_FORMAT:
    expected = setup.saved_state(target)
    saved = _checked(ckpt.restore(step, expected, data_iter), expected, ckpt, step, state_format)
    return setup.with_pretrained_text(saved, target)
  expected = target.replace(ema_params=target.params)
  state = _checked(ckpt.restore(step, expected, data_iter), expected, ckpt, step, state_format)
  return state.replace(ema_params=state_lib.mask_like(state.ema_params, target.ema_params))


def _checked(restored: Any, expected: Any, ckpt: checkpoint_lib.Checkpointer, step: int,
             state_format: int) -> Any:
  # Orbax restores what the checkpoint has where the target asks for more, so a layout that
  # does not match its meta would surface later as a tree mismatch inside jit.
  got, want = jax.tree.structure(restored), jax.tree.structure(expected)
  if got != want:
    raise ValueError(
        f"the checkpoint at step {step} in {ckpt.directory} does not hold the train state this "
        f"stage expects for state_format={state_format} (its meta): "
        f"{got.num_leaves} arrays restored, {want.num_leaves} expected")
  return restored
