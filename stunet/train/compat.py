"""Which config changes a resumed run may make (STYLE: Checkpoints and workdir).

A checkpoint stores the fields that define what was trained: the `model`, `text`,
`diffusion` and `data` sections, minus the data fields that only affect speed or file
locations. Resuming with different values would silently train another experiment, so the
loop refuses and lists the differences; `--allow_config_change` overrides. Optimiser, logging
and checkpoint fields may change freely (e.g. more steps, a lower learning rate).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import ml_collections

SECTIONS = ("model", "text", "diffusion", "data")
# Speed / location only: same examples in the same order, and the same function of the same
# parameters, whatever their values (`temporal_conv_impl` picks conv vs shifted matmuls for
# the same (k,1,1) kernel, `spatial_conv_impl` conv vs im2col matmuls for the same 3x3 kernel;
# `remat` / `remat_policy` recompute instead of storing activations; `attention_impl` picks
# the kernel of the same attention).
IGNORED = ("data.data_dir", "data.read_threads", "data.worker_count", "data.prefetch_batches",
           "text.cache_size", "text.on_truncation", "model.temporal_conv_impl",
           "model.spatial_conv_impl", "model.attention_impl", "model.remat",
           "model.remat_policy")


# Fields added after checkpoints existed whose default is resolved when a stage starts: the
# value a run saved before the field existed behaved as (`diffusion.null_text` 'auto' resolves
# to what the stage uses; the code before it always used zeros).
ABSENT_MEANS = {"diffusion.null_text": "zeros"}


def section_defaults() -> dict[str, Any]:
  """Compared fields at their defaults for the sections whose defaults do not depend on the
  dataset variant (`model`, `text`, `diffusion`)."""
  # Imported here: the section modules import JAX-free config code only, but stunet.config
  # pulls every section in and compat is imported by light tools too.
  from stunet.diffusion.config import diffusion_config  # pylint: disable=g-import-not-at-top
  from stunet.nn.config import model_config  # pylint: disable=g-import-not-at-top
  from stunet.text.config import text_config  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(
      {"model": model_config(), "text": text_config(), "diffusion": diffusion_config()})
  return compared_fields(config)


class ConfigMismatchError(ValueError):
  """Resuming with a config whose compared fields differ from the checkpoint's."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def compared_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The compared fields as a flat JSON-normalised dict (tuples become lists)."""
  tree = {s: config[s].to_dict() for s in SECTIONS if s in config}
  flat = {k: v for k, v in _flatten(tree).items() if k not in IGNORED}
  return json.loads(json.dumps(flat, sort_keys=True))


def fingerprint(fields: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """`field: saved -> current` lines, sorted by field name."""
  keys = sorted(set(saved) | set(current))
  missing = object()
  lines = []
  for k in keys:
    a, b = saved.get(k, missing), current.get(k, missing)
    if a != b:
      fmt = lambda v: "<absent>" if v is missing else json.dumps(v)
      lines.append(f"{k}: {fmt(a)} -> {fmt(b)}")
  return lines


def check_resume(saved: dict[str, Any], current: dict[str, Any], where: str,
                 allow_change: bool) -> list[str]:
  """Raises `ConfigMismatchError` listing the differing fields unless `allow_change`.

  Returns the differences (empty when compatible) so the caller can log an allowed change.
  """
  # Fields ignored now may have been compared when the checkpoint was written.
  saved = {k: v for k, v in saved.items() if k not in IGNORED}
  current = {k: v for k, v in current.items() if k not in IGNORED}
  # A field added to the code after the checkpoint was written: the run behaved as its default
  # does (new options default to the old behaviour), so the default is not a change.
  defaults = {**section_defaults(), **ABSENT_MEANS}
  for k, v in current.items():
    if k not in saved and k in defaults and defaults[k] == v:
      saved[k] = v
  diff = differences(saved, current)
  if diff and not allow_change:
    raise ConfigMismatchError(
        f"the config differs from the one the checkpoint in {where} was trained with in "
        f"{len(diff)} field(s):\n  " + "\n  ".join(diff) + "\nUse a new --workdir, restore "
        "these values, or pass --allow_config_change to resume anyway.")
  return diff
