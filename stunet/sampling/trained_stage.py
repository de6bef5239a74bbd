"""A trained stage of a workdir, ready to sample: its config, its restored params, its sampler.

`load_stage` reads `workdir/<stage>/config.json` (fields added to the code since take their
defaults), builds the stage, and restores the EMA or raw params of a checkpoint (the latest by
default) through `stunet.train.restore.restore_params`. `runner` keeps one compiled sampler per
model and setting for the process.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from stunet import config as config_lib
from stunet.conditioning import stylize
from stunet.parallel import mesh as mesh_lib
from stunet.sampling import options as options_lib
from stunet.train import build as build_lib
from stunet.train import compat
from stunet.train import restore as restore_lib
from stunet.train import stages as stages_lib

TRAIN_COMMAND = "python -m experiments.train --config=<config file> --workdir={workdir}"


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples the configs use."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def stage_dir(workdir: str, stage: str) -> str:
  stages_lib.get_stage(stage)  # unknown stage: ValueError naming the registered ones
  return os.path.join(os.path.abspath(workdir), stage)


def _with_new_fields(saved: dict, defaults: dict) -> dict:
  """`saved` plus the fields of `defaults` it lacks (recursively); saved values win."""
  out = dict(saved)
  for key, value in defaults.items():
    if key not in out:
      out[key] = value
    elif isinstance(value, dict) and isinstance(out[key], dict):
      out[key] = _with_new_fields(out[key], value)
  return out


def load_run_config(workdir: str, stage: str) -> ml_collections.ConfigDict:
  """The config a stage was trained with (`workdir/<stage>/config.json`).

  A field added to the code after the run was written takes its default, which is the
  behaviour the run was trained with (new options default to the old behaviour; the resume
  check, `stunet.train.compat`, treats them the same way).
  """
  path = os.path.join(stage_dir(workdir, stage), "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no {stage!r} stage in {os.path.abspath(workdir)} ({path} is missing); train it with "
        f"{TRAIN_COMMAND.format(workdir=workdir)}")
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  variant = saved.get("data", {}).get("builder_config", "demo")
  try:
    defaults = config_lib.default_config(variant).to_dict()
  except ValueError:  # a dataset variant this code does not know: its data section as saved
    defaults = config_lib.default_config().to_dict()
    defaults.pop("data")
  return ml_collections.ConfigDict(_tuples(_with_new_fields(saved, defaults)))


def truncated_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[int]:
  """Indices of the prompts the tokenizer cuts to `max_length` tokens."""
  if hasattr(tokenizer, "tokenize"):  # ByteTokenizer reports truncation itself
    return [int(i) for i in np.flatnonzero(tokenizer.tokenize(list(prompts))[2])]
  if hasattr(tokenizer, "encode_unpadded"):  # SentencePiece
    return [i for i, p in enumerate(prompts)
            if len(tokenizer.encode_unpadded(p)) > tokenizer.max_length]
  _, mask = tokenizer(list(prompts))  # unknown tokenizer: a full row may have been cut
  return [int(i) for i in np.flatnonzero(np.asarray(mask)[:, -1])]


def _restore_params(setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, directory: str,
                    step: int | None, which: str, config_override: bool) -> tuple[Any, int]:
  """`(params, step)` of `which` ('ema' | 'raw') restored onto `mesh`."""
  def missing():
    return FileNotFoundError(
        f"no checkpoint in {directory}; train the {setup.stage.name!r} stage first: "
        f"{TRAIN_COMMAND.format(workdir=os.path.dirname(os.path.dirname(directory)))}")

  def check(meta, saved_step):  # an overridden config must still describe the checkpoint
    compat.check_resume(meta["compared_fields"], compat.compared_fields(setup.config),
                        os.path.join(directory, str(saved_step)), allow_change=False)

  return restore_lib.restore_params(directory, setup, mesh, step=step, which=which,
                                    missing=missing, check=check if config_override else None)


# Compiled samplers of this process, keyed by everything they close over: repeated calls
# (notebooks, benchmarks, tests) compile once per model and setting.
_RUNNERS: dict[tuple, Any] = {}


def runner(cls, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, **kwargs):
  key = (cls, setup.stage.name, setup.config.to_json_best_effort(sort_keys=True), mesh,
         tuple(sorted(kwargs.items())))
  if key not in _RUNNERS:
    _RUNNERS[key] = cls(setup, mesh, **kwargs)
  return _RUNNERS[key]


def load_stage(workdir: str, stage: str, step: int | None, which: str,
               mesh: jax.sharding.Mesh | None,
               config: ml_collections.ConfigDict | None = None):
  """`(setup, params, step, mesh)` of a trained stage of `workdir`."""
  run_config = load_run_config(workdir, stage)
  base = ml_collections.ConfigDict((run_config if config is None else config).to_dict())
  # Truncation is reported by the caller, once per prompt, whatever mode the run trained with.
  base.text.on_truncation = "silent"
  setup = build_lib.build_stage(base, stages_lib.get_stage(stage))
  mesh = mesh_lib.make_mesh(setup.config.mesh) if mesh is None else mesh
  ckpt_dir = os.path.join(stage_dir(workdir, stage), "checkpoints")
  params, step = _restore_params(setup, mesh, ckpt_dir, step, which, config is not None)
  return setup, params, step, mesh


def styled_params(params: Any, style: options_lib.StyleOptions, mesh: jax.sharding.Mesh
                  ) -> tuple[Any, int]:
  """`(params, style step)`: video `params` whose spatial U-Net weights are blended with the
  style run's (EMA) T2I weights, `a W_style + (1 - a) W`; temporal weights and the text
  encoder unchanged."""
  style.validate()
  _, style_params, step, _ = load_stage(style.workdir, "t2i_style", style.step, "ema", mesh)
  unet = stylize.interpolate_spatial(params["unet"], style_params["unet"], style.alpha)
  return {**params, "unet": unet}, step

