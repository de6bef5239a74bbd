"""Writes and reads converted public weights as an orbax checkpoint in a workdir.

Layout (the same `checkpoints/<step>/state` shape as training workdirs, step 0):

  WORKDIR/config.json                 {"model": {...}} (U-Net) or {"t5": {...}} (text
                                      encoder), plus "imported_from": {"format", "source"}
                                      and, for U-Nets, "text_width"
  WORKDIR/checkpoints/0/state/        orbax StandardSave of {"params": <plain arrays>}

Parameters are saved unboxed (no `nn.Partitioned` wrappers) so any reader can restore them
without our module code; `load_params` re-applies a target's boxing (logical axis names).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp

STEP = 0
CONFIG_NAME = "config.json"


def _jsonable(value):
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def save(workdir: str, config: dict[str, Any], params: Any) -> str:
  """Writes `config` to WORKDIR/config.json and `{'params': params}` as checkpoint step 0.

  Returns the checkpoint directory (WORKDIR/checkpoints/0).
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if os.path.exists(os.path.join(ckpt_dir, str(STEP))):
    raise FileExistsError(f"{ckpt_dir}/{STEP} already exists; choose an empty --out directory.")
  with open(os.path.join(workdir, CONFIG_NAME), "w", encoding="utf-8") as f:
    json.dump(_jsonable(config), f, indent=2, sort_keys=True)
  plain = jax.tree.map(np.asarray, nn.unbox(params))
  with ocp.CheckpointManager(ckpt_dir) as manager:
    manager.save(STEP, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": plain})))
    manager.wait_until_finished()
  return os.path.join(ckpt_dir, str(STEP))


def load_config(workdir: str) -> dict[str, Any]:
  with open(os.path.join(workdir, CONFIG_NAME), encoding="utf-8") as f:
    return json.load(f)


def load_params(workdir: str, target: Any) -> Any:
  """Restores the params of WORKDIR into the structure of `target` (boxed or plain).

  `target` may hold arrays or `jax.ShapeDtypeStruct`s (with shardings, to restore sharded);
  its boxes, if any, are put back around the restored values.
  """
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      nn.unbox(target))
  with ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints")) as manager:
    restored = manager.restore(STEP, args=ocp.args.Composite(
        state=ocp.args.StandardRestore({"params": abstract})))
  values = flax.traverse_util.flatten_dict(flax.core.unfreeze(restored["state"]["params"]))
  boxes = flax.traverse_util.flatten_dict(flax.core.unfreeze(target))
  out = {k: (leaf.replace_boxed(values[k]) if isinstance(leaf, nn.meta.AxisMetadata)
             else values[k]) for k, leaf in boxes.items()}
  return flax.traverse_util.unflatten_dict(out)
