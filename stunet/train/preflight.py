"""Checks a whole run's config before its first step (STYLE: Configs, "fails at start-up").

`config.stages` runs its stages one after another, and each stage resolves its own config
(`build.stage_config`: the per-stage overrides, then the stage's `configure`). Checked only
when a stage starts, a bad value of a later stage (`data.frames=7` against the video stage's
temporal down-sampling) surfaces after the earlier stages have trained and checkpointed.
`check_run` resolves every stage the way `build.build_stage` will and runs the same checks
up front: the section validations, the U-Net config, the input shape against the model's
down-sampling (`UNetConfig.check_input`), the global batch against the mesh, and that the
files a stage starts from exist. It builds no modules and touches neither devices nor the
workdir.
"""

from __future__ import annotations

import os

import jax
import ml_collections

from stunet.data import global_batch
from stunet.diffusion import config as diffusion_config_lib
from stunet.nn.config import UNetConfig
from stunet.text import config as text_config_lib
from stunet.train import build as build_lib
from stunet.train import stages as stages_lib


def check_stage(config: ml_collections.ConfigDict, stage: stages_lib.Stage,
                mesh: jax.sharding.Mesh) -> ml_collections.ConfigDict:
  """The stage-resolved config of `stage`; raises ValueError / FileNotFoundError naming a field.

  `config` is the run's config (not yet resolved for the stage).
  """
  c = build_lib.stage_config(config, stage)
  diffusion_config_lib.validate(c.diffusion)
  text_config_lib.validate(c.text)
  unet_config = UNetConfig.from_config(c.model)
  build_lib.stage_example_shape(c, unet_config, stage.modality)
  global_batch.check_batch_size(c.data.global_batch_size, jax.process_count(), mesh,
                                c.data.batch_axes)
  check_grad_accum(c, mesh)
  global_batch.check_rows_per_process(mesh, c.data.batch_axes)
  check_context(c, mesh, stage)
  _check_paths(c, stage)
  return c


def check_grad_accum(c: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
  """`optim.grad_accum_steps` must divide every device's share of the global batch: each
  microbatch then takes the same number of examples from every device's own shard."""
  k = c.optim.get("grad_accum_steps", 1)
  if k == 1:
    return
  data_parallel = global_batch.data_parallel_size(mesh, c.data.batch_axes)
  per_device = c.data.global_batch_size // data_parallel
  if per_device % k:
    raise ValueError(
        f"optim.grad_accum_steps={k} does not divide the per-device batch of {per_device} "
        f"(data.global_batch_size={c.data.global_batch_size} over a data-parallel size of "
        f"{data_parallel}); use a divisor of {per_device} or a larger global batch")


def check_context(c: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                  stage: stages_lib.Stage) -> None:
  """A `context` mesh axis splits a video's frames: it must divide `data.frames`, or no level
  of the video model would be split and the axis would only hold copies."""
  context = dict(mesh.shape).get("context", 1)
  if context == 1 or stage.modality != "video":
    return
  frames = c.data.get("frames")
  if frames and frames % context:
    raise ValueError(
        f"the mesh's context axis of {context} devices does not divide data.frames={frames}: "
        f"no level's frames would be split. Use a context size that divides {frames} "
        f"(mesh.shape) or more frames.")


def check_run(config: ml_collections.ConfigDict,
              mesh: jax.sharding.Mesh) -> list[ml_collections.ConfigDict]:
  """Checks every stage of `config.stages` (module doc); returns their resolved configs.

  The first bad value raises, its message prefixed with the stage it breaks, so that a
  field shared by all stages (`data.frames`) says which stage cannot use it.
  """
  resolved = []
  for stage in stages_lib.parse_stages(config.stages):
    try:
      resolved.append(check_stage(config, stage, mesh))
    except FileNotFoundError as e:
      raise FileNotFoundError(f"stage {stage.name!r}: {e}") from None
    except ValueError as e:
      raise type(e)(f"stage {stage.name!r}: {e}") from None
  return resolved


def _check_paths(c: ml_collections.ConfigDict, stage: stages_lib.Stage) -> None:
  """The user-given files a stage reads when it starts, if set, must exist.

  Remote paths (gs://, read by orbax/TFDS on pods) are left to the reader: checking them
  would need credentials this early.
  """
  s = c.stage[stage.name] if stage.name in c.stage else None
  if s is None:
    return
  init_from = s.get("init_from", "")
  if _is_local(init_from) and not os.path.exists(init_from):
    raise FileNotFoundError(f"stage.{stage.name}.init_from={init_from!r} does not exist")
  image = s.get("image", "")
  if _is_local(image) and not os.path.isfile(image):
    raise FileNotFoundError(f"stage.{stage.name}.image={image!r} is not a file")


def _is_local(path: str) -> bool:
  return bool(path) and "://" not in str(path)
