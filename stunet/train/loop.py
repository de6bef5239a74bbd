"""The training loop: runs the stages of `config.stages` in order (STYLE: Training step).

Per stage, in `workdir/<stage>/`:
  config.json      the stage-resolved config
  metrics.jsonl    logged metrics (process 0), `tensorboard/` event files
  checkpoints/<step>/{state, data_iter, meta}
  samples/<step>/  PNG grid and videos from the EMA weights

The video stage starts from the t2i stage of the same workdir, from another run
(`config.stage.video.init_from`), or from public T2I weights imported by
`experiments/convert.py` (`init_from` = the imported workdir; see `load_imported_params`).

A rerun with the same workdir resumes each stage from its latest checkpoint (finished stages
are skipped). Metrics are fetched from the device only every `log.every_steps` steps and
before each checkpoint, where every pending loss is checked: a NaN/inf stops the run before the
bad state can be saved, so the last checkpoint stays good.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from stunet.convert import imported_checkpoint
from stunet.data import global_batch
from stunet.data import pipeline
from stunet.nn.config import UNetConfig
from stunet.parallel import mesh as mesh_lib
from stunet.parallel import sharding as sharding_lib
from stunet.text import null_text as null_text_lib
from stunet.train import build as build_lib
from stunet.train import checkpoint as checkpoint_lib
from stunet.train import compat
from stunet.train import metrics as metrics_lib
from stunet.train import preemption as preemption_lib
from stunet.train import preflight
from stunet.train import restore as restore_lib
from stunet.train import samples as samples_lib
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib
from stunet.train import step as step_lib


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or infinite; the run stops without saving the bad state."""


@dataclasses.dataclass
class StageResult:
  stage: str
  step: int  # last step reached
  preempted: bool
  state: Any = None


def check_param_sharding(mesh_config, params, shardings, mesh) -> None:
  """`mesh.param_sharding_check` on a stage's parameters: warn (once per stage) or raise when
  one device holds more than its share under perfect sharding allows (module
  `stunet.parallel.sharding`: indivisible dims are replicated silently)."""
  mode = mesh_config.get("param_sharding_check", "warn")
  if mode == "off":
    return
  tolerance = mesh_config.get("max_param_excess", 0.1)
  if mode == "error":
    sharding_lib.check_sufficiently_sharded(params, shardings, mesh, tolerance)
    return
  report = sharding_lib.sharding_report(params, shardings, mesh)
  if report.excess > tolerance:
    logging.warning("parameters not sufficiently sharded (mesh.max_param_excess=%s): %s",
                    tolerance, report.describe())


def ensure_data(data_config: ml_collections.ConfigDict) -> None:
  """Builds the embedded `shapes_video` dataset if it is missing (one-command quick start)."""
  if data_config.files or data_config.dataset != "shapes_video":
    return
  from stunet.data import shapes_video  # pylint: disable=g-import-not-at-top
  # The current version must be there: an older build (other object sizes, other motions) is
  # not what this code trains on, so it is built beside the old one, which is left alone.
  current = os.path.join(data_config.data_dir, data_config.dataset, data_config.builder_config,
                         str(shapes_video.ShapesVideo.VERSION), "dataset_info.json")
  missing = not os.path.exists(current)
  if jax.process_count() > 1:
    # Process 0 decides for all: another process may look while process 0 is writing the
    # dataset, and must then still wait for it at the barrier below.
    from jax.experimental import multihost_utils
    missing = bool(multihost_utils.broadcast_one_to_all(np.int32(missing)))
  if not missing:
    return
  if jax.process_index() == 0:
    logging.info("building shapes_video/%s into %s", data_config.builder_config,
                 data_config.data_dir)
    shapes_video.ShapesVideo(config=data_config.builder_config,
                             data_dir=data_config.data_dir).download_and_prepare()
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("shapes_video built")


def _parent_checkpoint(config, stage: stages_lib.Stage, workdir: str) -> tuple[str, int | None]:
  """(checkpoints dir, step or None = latest) of the run this stage starts from."""
  init_from = config.stage[stage.name].init_from if stage.name in config.stage else ""
  if not init_from:
    return os.path.join(workdir, stage.parent, "checkpoints"), None
  init_from = os.path.abspath(init_from)
  if os.path.isdir(os.path.join(init_from, "checkpoints")):
    return os.path.join(init_from, "checkpoints"), None
  base = os.path.basename(init_from.rstrip("/"))
  if base.isdigit():
    return os.path.dirname(init_from.rstrip("/")), int(base)
  return init_from, None


def _imported_workdir(config, stage: stages_lib.Stage) -> str | None:
  """`config.stage.<stage>.init_from` when it is a workdir of imported public weights."""
  init_from = config.stage[stage.name].init_from if stage.name in config.stage else ""
  if not init_from:
    return None
  directory = os.path.abspath(init_from)
  path = os.path.join(directory, imported_checkpoint.CONFIG_NAME)
  if not os.path.isfile(path):
    return None
  try:
    imported = imported_checkpoint.load_config(directory)
  except json.JSONDecodeError:
    return None
  return directory if isinstance(imported, dict) and "imported_from" in imported else None


def resolve_null_text(config, stage: stages_lib.Stage, workdir: str) -> str:
  """`config.diffusion.null_text` for `stage`, with `auto` resolved (`stunet.text.null_text`).

  `auto` is `empty_caption` when the stage starts from an imported U-Net (public T2I weights
  were trained with their encoder's empty prompt), the parent stage's own (saved) choice when
  it starts from a parent, and `zeros` for a stage trained from scratch. A parent saved
  before the option existed trained with zeros.
  """
  kind = config.diffusion.get("null_text", "auto")
  if kind != "auto":
    return kind
  if not stage.parent:
    return "zeros"
  if _imported_workdir(config, stage) is not None:
    return "empty_caption"
  directory, _ = _parent_checkpoint(config, stage, workdir)
  path = os.path.join(os.path.dirname(directory.rstrip("/")), "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      parent = json.load(f).get("diffusion", {}).get("null_text", "zeros")
  except (OSError, json.JSONDecodeError):
    parent = "zeros"  # no readable parent config: load_parent_params reports what is missing
  return parent if parent in null_text_lib.KINDS and parent != "auto" else "zeros"


def with_resolved_null_text(config, stage: stages_lib.Stage,
                            workdir: str) -> ml_collections.ConfigDict:
  """`config` (a copy when it changes) with `diffusion.null_text` resolved for `stage`."""
  kind = resolve_null_text(config, stage, workdir)
  if config.diffusion.get("null_text") == kind:
    return config
  c = ml_collections.ConfigDict(config.to_dict())
  c.diffusion.null_text = kind
  return c


# UNetConfig fields that change how the model computes, not which parameters it has.
_COMPUTE_ONLY_FIELDS = frozenset({"dtype", "remat", "remat_policy"})


def spatial_differences(imported_model: dict[str, Any], model_config) -> dict[str, tuple]:
  """`{field: (imported value, config value)}` of the spatial U-Net fields that differ.

  Temporal fields (`temporal_*`) are the video stage's own choice, and compute-only fields
  (dtype, remat, remat_policy) do not change the parameters, so neither is compared.
  """
  imported = UNetConfig.from_config(dict(imported_model))
  ours = UNetConfig.from_config(model_config)
  out = {}
  for field in dataclasses.fields(UNetConfig):
    name = field.name
    if name.startswith("temporal_") or name in _COMPUTE_ONLY_FIELDS:
      continue
    if getattr(imported, name) != getattr(ours, name):
      out[name] = (getattr(imported, name), getattr(ours, name))
  return out


def load_imported_params(config, stage: stages_lib.Stage, directory: str,
                         mesh: jax.sharding.Mesh) -> Any:
  """`{'unet', 'text'}` params for `stage` from public T2I weights imported into `directory`.

  The U-Net params are restored onto `mesh` with the parent (t2i) stage's shardings. An
  imported U-Net was trained with its own pre-trained text encoder, so `config.text` must
  name pre-trained weights of the same width; those are the text params. Imported
  checkpoints hold no EMA: their params are used.
  """
  parent_setup = build_lib.build_stage(config, stages_lib.get_stage(stage.parent))
  field = f"config.stage.{stage.name}.init_from"
  imported = imported_checkpoint.load_config(directory)
  if not parent_setup.text_pretrained:
    raise ValueError(
        f"{field}={directory!r} holds an imported U-Net, which was trained with its own "
        f"pre-trained text encoder, but text.kind={config.text.kind!r} has no pre-trained "
        f"weights; set text.kind='t5' and text.t5_dir to a local copy of the encoder the "
        f"U-Net was trained with")
  if "model" not in imported:
    raise ValueError(f"{field}={directory!r} holds imported weights without a 'model' "
                     f"section (not a U-Net; a text encoder import is used via text.t5_dir)")
  differences = spatial_differences(imported["model"], config.model)
  if differences:
    listed = "; ".join(f"model.{name}: imported {a!r}, config {b!r}"
                       for name, (a, b) in sorted(differences.items()))
    raise ValueError(f"config.model differs from the U-Net imported in {directory} (its "
                     f"config.json 'model') in spatial fields, so its weights do not fit: "
                     f"{listed}. Set these fields to the imported values (only temporal_* "
                     f"fields may differ).")
  width = parent_setup.text_width()
  if imported.get("text_width") != width:
    raise ValueError(f"the U-Net imported in {directory} expects text embeddings of width "
                     f"{imported.get('text_width')} (its config.json 'text_width') but the "
                     f"text encoder of text.kind={config.text.kind!r} (text.t5_dir="
                     f"{config.text.t5_dir!r}) produces width {width}")
  target = parent_setup.abstract_state(mesh)
  unet = imported_checkpoint.load_params(directory, target.params["unet"])
  text = build_lib.place_pretrained_text(parent_setup.pretrained_text_params(),
                                         target.params["text"])
  logging.info("stage %s: starting from the U-Net imported in %s (from %s)", stage.name,
               directory, imported.get("imported_from"))
  return {"unet": unet, "text": text}


def load_parent_params(config, stage: stages_lib.Stage, workdir: str,
                       mesh: jax.sharding.Mesh) -> Any:
  """The parent stage's (EMA) params, restored onto `mesh` with the parent's shardings.

  When `config.stage.<stage>.init_from` is a workdir of imported public weights, these come
  from `load_imported_params` instead.
  """
  imported = _imported_workdir(config, stage)
  if imported is not None:
    return load_imported_params(config, stage, imported, mesh)
  parent = stages_lib.get_stage(stage.parent)
  directory, step = _parent_checkpoint(config, stage, workdir)

  def missing():
    return FileNotFoundError(
        f"stage {stage.name!r} starts from a {parent.name!r} checkpoint, but none is in "
        f"{directory}; run the {parent.name!r} stage first (config.stages) or set "
        f"config.stage.{stage.name}.init_from")

  use_ema = config.stage[stage.name].get("init_from_ema", True) if stage.name in config.stage \
      else True
  params, step = restore_lib.restore_params(
      directory, build_lib.build_stage(config, parent), mesh, step=step,
      which="ema" if use_ema else "raw", missing=missing)
  logging.info("stage %s: starting from %s step %d", stage.name, directory, step)
  return params


class _Pending:
  """Device metrics of steps not yet fetched (fetching every step would stall dispatch)."""

  def __init__(self):
    self.items: list[tuple[int, dict]] = []

  def add(self, step: int, metrics: dict) -> None:
    self.items.append((step, metrics))

  def fetch(self) -> list[tuple[int, dict]]:
    fetched = jax.device_get(self.items)
    self.items = []
    for step, m in fetched:
      loss = float(m["loss"])
      if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss} at step {step}")
    return [(s, {k: float(v) for k, v in m.items()}) for s, m in fetched]


def resolve_stage_config(config: ml_collections.ConfigDict, stage: stages_lib.Stage,
                         workdir: str) -> ml_collections.ConfigDict:
  """The config `stage` really trains with (locked): `config.stage.<name>` folded into the
  shared sections and the stage's own fields checked (`build.stage_config`), and
  `diffusion.null_text='auto'` made concrete (`resolve_null_text`). Resolving it again gives
  the same config, which is what sampling relies on when it rebuilds a stage from its saved
  `config.json`."""
  return build_lib.stage_config(with_resolved_null_text(config, stage, workdir), stage)


def run_stage(config: ml_collections.ConfigDict, stage: stages_lib.Stage, workdir: str, *,
              mesh: jax.sharding.Mesh, allow_config_change: bool = False,
              watcher: preemption_lib.PreemptionWatcher | None = None) -> StageResult:
  """Trains (or resumes) one stage to `optim.num_steps` (after per-stage overrides).

  `watcher` reports SIGTERM; without one, a watcher is installed for this stage only.
  """
  if watcher is None:
    with preemption_lib.PreemptionWatcher() as own:
      return run_stage(config, stage, workdir, mesh=mesh,
                       allow_config_change=allow_config_change, watcher=own)
  # The stage's effective config, resolved once (`resolve_stage_config`): the step, the data
  # pipeline, the resume check and `config.json` all read this `c`. Only the parent stage's
  # start point reads the run's `config` (the parent resolves it for itself).
  c = resolve_stage_config(config, stage, workdir)
  setup = build_lib.build_stage(c, stage)  # resolving a resolved config changes nothing
  stage_dir = os.path.join(os.path.abspath(workdir), stage.name)
  is_main = jax.process_index() == 0
  num_steps = c.optim.num_steps
  compared = compat.compared_fields(c)

  if stage.make_data is not None:
    data_iter = stage.make_data(c, mesh=mesh, tokenizer=setup.tokenizer)
  else:
    ensure_data(c.data)
    data_iter = pipeline.make_train_iterator(c.data, mesh=mesh, tokenizer=setup.tokenizer)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(stage_dir, "checkpoints"), c.ckpt)
  rng = jax.random.key(c.seed)
  latest = ckpt.latest_step()
  if latest is not None:
    saved = ckpt.restore_meta(latest)
    changed = compat.check_resume(saved["compared_fields"], compared,
                                  os.path.join(stage_dir, "checkpoints", str(latest)),
                                  allow_config_change)
    if changed:
      logging.warning("resuming %s with changed fields (allowed): %s", stage.name, changed)
    state = restore_lib.restore_state(ckpt, latest, setup, mesh, data_iter, meta=saved)
    shardings = jax.tree.map(lambda x: x.sharding, state)  # the restore target's
    logging.info("stage %s: resumed from step %d", stage.name, latest)
  else:
    parent = load_parent_params(config, stage, workdir, mesh) if stage.parent else None
    state, shardings = setup.create_state(mesh, rng, parent)
  check_param_sharding(c.mesh, state.params, shardings.params, mesh)
  start = int(jax.device_get(state.step))

  if is_main:
    os.makedirs(stage_dir, exist_ok=True)
    with open(os.path.join(stage_dir, "config.json"), "w") as f:
      f.write(c.to_json_best_effort(indent=2, sort_keys=True) + "\n")

  def meta(step):
    return {"step": int(step), "stage": stage.name, "state_format": state_lib.STATE_FORMAT,
            "compared_fields": compared,
            "config_fingerprint": compat.fingerprint(compared)}

  # A conditioned stage's samples need conditioning inputs the loop does not have: sample
  # those with experiments/sample.py (--mode / --ssr_workdir).
  sampler = (samples_lib.Sampler(setup, mesh)
             if c.log.num_samples and not stage.cond_channels else None)

  def write_samples(step, state):
    if sampler is None:
      return
    prompts = [c.sample.prompts[i % len(c.sample.prompts)] for i in range(c.log.num_samples)]
    pixels = sampler(state.ema_weights, prompts, jax.random.key(c.sample.seed))
    if is_main:
      samples_lib.write_samples(os.path.join(stage_dir, "samples", str(step)), pixels, prompts,
                                c.sample.fps)

  if start >= num_steps:
    logging.info("stage %s: already at step %d >= %d", stage.name, start, num_steps)
    ckpt.close()
    return StageResult(stage.name, start, False, state)

  batch_sharding = global_batch.batch_sharding(mesh, c.data.batch_axes)
  keys = (stage.modality, "text_ids", "text_mask")
  train_step = step_lib.jit_step(setup.step_fn(), shardings, {k: batch_sharding for k in keys},
                                 mesh)
  writer = metrics_lib.MetricsWriter(stage_dir, start_step=start, num_steps=num_steps,
                                     active=is_main, tensorboard=c.log.tensorboard,
                                     progress_bar=c.log.progress_bar, desc=stage.name)
  pending = _Pending()
  last_saved = latest

  def flush():
    # Every step gets a record (a mean over the window would hide a single bad step).
    writer.write(pending.fetch())

  step = start
  preempted = False
  try:
    while step < num_steps:
      batch = next(data_iter)
      state, metrics = train_step(state, batch)
      step += 1
      pending.add(step, metrics)
      preempted = watcher.requested()
      save = step % c.ckpt.every_steps == 0 or step == num_steps or preempted
      if save or step % c.log.every_steps == 0:
        flush()  # raises NonFiniteLossError before a bad state is saved
      if save:
        ckpt.save(step, setup.saved_state(state), data_iter, meta(step))
        last_saved = step
      if c.log.sample_every_steps and step % c.log.sample_every_steps == 0:
        write_samples(step, state)
      if preempted:
        logging.warning("stage %s: SIGTERM; saved step %d, exiting", stage.name, step)
        break
  except NonFiniteLossError as e:
    ckpt.wait()
    ckpt.close()
    writer.close()
    where = (f"the last good checkpoint is step {last_saved} in {ckpt.directory}"
             if last_saved is not None else "no checkpoint was written")
    raise NonFiniteLossError(f"stage {stage.name}: {e}; stopping ({where})") from None
  ckpt.wait()
  ckpt.close()
  writer.close()
  if not preempted and not (c.log.sample_every_steps and
                            step % c.log.sample_every_steps == 0):
    write_samples(step, state)
  return StageResult(stage.name, step, preempted, state)


def train(config: ml_collections.ConfigDict, workdir: str, *,
          mesh: jax.sharding.Mesh | None = None,
          allow_config_change: bool = False) -> list[StageResult]:
  """Runs `config.stages` in order; stops after a preempted stage."""
  stages = stages_lib.parse_stages(config.stages)
  mesh = mesh_lib.make_mesh(config.mesh) if mesh is None else mesh
  # Every stage's config is checked before the first one trains: a value only a later stage
  # rejects must not cost the earlier stages' training.
  preflight.check_run(config, mesh)
  results = []
  # One watcher for the whole run: a SIGTERM while a stage is compiling or between stages
  # is honoured at the next step boundary instead of killing the process.
  with preemption_lib.PreemptionWatcher() as watcher:
    for stage in stages:
      result = run_stage(config, stage, workdir, mesh=mesh,
                         allow_config_change=allow_config_change, watcher=watcher)
      results.append(result)
      if result.preempted or watcher.requested():
        break
  return results
