"""The temporal down-sampling ablation's variants and their compiled-step analysis (SPEC §1,
§6-§7). The sweep that runs them is `stunet.apps.ablation_sweep`; its tables and plots are
`stunet.eval.ablation_report`.

A variant is a name, `{dotted.field: value}` overrides of a base config and optionally a kind
(`VARIANT_KINDS`): ``video`` (one STUNet, the video stage) or ``keyframes_tsr`` (a keyframe
model on every ``stage.tsr.keyframe_interval``-th frame and a TSR model filling the frames
between, `stunet.conditioning.keyframes_tsr`). `analyse` compiles a variant's train step on
one local device and records parameters, XLA's FLOPs and peak memory, and optionally the
measured step time; `analyse_keyframes_tsr` sums the two models' numbers (`SUMMED`) and keeps
each model's own.
"""

from __future__ import annotations

import jax
import ml_collections

from stunet.conditioning import keyframes_tsr
from stunet.nn.config import UNetConfig
from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import measure
from stunet.train import stages as stages_lib
from stunet.train import step as step_lib

VARIANT_KINDS = ("video", "keyframes_tsr")
# Numbers of the keyframes + TSR rows that are sums over the two models.
SUMMED = ("params_total", "params_temporal", "params_text", "train_step_flops",
          "peak_memory_bytes", "temp_memory_bytes", "compile_seconds", "step_seconds")


def variant_kind(variant) -> str:
  """The kind of a sweep variant ``(name, overrides[, kind])``; 'video' when not given."""
  kind = variant[2] if len(variant) > 2 else "video"
  if kind not in VARIANT_KINDS:
    raise ValueError(f"sweep.variants: variant {variant[0]!r} has kind {kind!r}; expected one "
                     f"of {VARIANT_KINDS}")
  return kind


def variant_config(base: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """`base` with `{dotted.field: value}` overrides; an unknown field is a ValueError."""
  c = ml_collections.ConfigDict(base.to_dict())
  for field, value in overrides.items():
    node, parts = c, field.split(".")
    for part in parts[:-1]:
      if part not in node:
        raise ValueError(f"variant override {field!r}: no field {part!r} in the config")
      node = node[part]
    if parts[-1] not in node:
      raise ValueError(f"variant override {field!r}: no field {parts[-1]!r} in the config")
    node[parts[-1]] = tuple(value) if isinstance(value, list) else value
  return c


def _single_device_mesh(config) -> jax.sharding.Mesh:
  return mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:1])


def frames_error(config, frames: int) -> str:
  try:
    model = UNetConfig.from_config(config.model)
    model.check_input(frames, int(config.data.resolution), int(config.data.resolution))
  except ValueError as e:
    return str(e)
  return ""


def _stage_setup(config, frames: int, batch: int, stage: str = "video"):
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.frames = frames
  c.stage[stage].global_batch_size = batch
  c.mesh.shape = (1, 1, 1)
  c.text.on_truncation = "silent"
  return build_lib.build_stage(c, stages_lib.get_stage(stage))


def analyse(config, frames: int, batch: int = 1, time_repeats: int = 0,
            stage: str = "video") -> dict:
  """Params, FLOPs and peak bytes of the compiled train step of `stage` at `frames`.

  With `time_repeats > 0` the compiled step also runs that many times on random weights and
  data (after one warm-up run) and the median seconds per step are recorded.
  """
  error = frames_error(config, frames)
  if error:
    return {"frames": frames, "error": error}
  try:
    setup = _stage_setup(config, frames, batch, stage)
  except ValueError as e:  # a stage's own fields (e.g. the TSR keyframe interval) do not fit
    return {"frames": frames, "error": str(e)}
  mesh = _single_device_mesh(setup.config)
  state = setup.abstract_state(mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_in = measure.abstract_batch(setup, batch, replicated)
  shardings = jax.tree.map(lambda x: x.sharding, state)
  step = step_lib.jit_step(setup.step_fn(), shardings, {k: replicated for k in batch_in}, mesh)
  compiled, compile_s = measure.compile_timed(step.jitted, (state, batch_in), mesh)
  memory = measure.memory(compiled)
  counts = measure.param_counts(state.params, setup.labels)
  row = {"frames": frames, "batch": batch, "params_total": counts["unet"],
         "params_temporal": counts["unet_temporal"], "params_text": counts["text"],
         "train_step_flops": measure.flops(compiled), "peak_memory_bytes": memory.peak_bytes,
         "temp_memory_bytes": memory.temp_bytes, "compile_seconds": compile_s, "error": ""}
  if time_repeats:
    concrete = [measure.random_like(state)]
    data = measure.random_like(batch_in, seed=1)

    def run():
      with jax.set_mesh(mesh):
        concrete[0], metrics = compiled(concrete[0], data)  # the state is donated
      jax.block_until_ready(metrics)
    # The first run pays one-off allocation costs.
    row["step_seconds"] = measure.median_seconds(run, time_repeats, warmup=1)
  return row


def analyse_keyframes_tsr(config, frames: int, batch: int = 1, time_repeats: int = 0) -> dict:
  """`analyse` of the keyframe model (at ``frames / k``) and the TSR model (at ``frames``).

  The row's `SUMMED` numbers are the sums over the two models (``models`` says so); each
  model's own numbers are kept as ``keyframes_<key>`` and ``tsr_<key>``.
  """
  interval = config.stage.tsr.keyframe_interval
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.frames = frames
  try:
    keyframe_config = keyframes_tsr.keyframe_config(c)
  except ValueError as e:
    return {"frames": frames, "error": str(e)}
  error = frames_error(c, frames)  # before compiling the keyframe model for nothing
  if error:
    return {"frames": frames, "error": f"tsr model: {error}"}
  parts = {"keyframes": analyse(keyframe_config, frames // interval, batch, time_repeats),
           "tsr": analyse(c, frames, batch, time_repeats, stage="tsr")}
  for name, part in parts.items():
    if part.get("error"):
      return {"frames": frames, "error": f"{name} model: {part['error']}"}
  row = {"frames": frames, "batch": batch, "error": "", "models": "keyframes+tsr",
         "keyframe_interval": interval, "keyframe_frames": frames // interval,
         "keyframe_temporal_factors": list(keyframe_config.model.temporal_factors)}
  for key in SUMMED:
    if all(key in part for part in parts.values()):
      row[key] = sum(part[key] for part in parts.values())
      row.update({f"{name}_{key}": part[key] for name, part in parts.items()})
  return row
