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
    target = setup.abstract_state(mesh)
    state = ckpt.restore(step, target)
  finally:
    ckpt.close()
  return (state.ema_params if which == "ema" else state.params), step
