"""Model size and cost without allocating weights: parameter counts and XLA forward FLOPs.

Everything runs on abstract shapes (`jax.eval_shape`, `jit(...).lower`), so the paper-scale
model is summarised on a laptop. FLOPs come from XLA's cost analysis of the lowered forward
pass at the configured video size, for the STUNet and for the T2I U-Net applied per frame.
"""

from __future__ import annotations

import dataclasses

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from stunet.nn.config import UNetConfig
from stunet.nn.inflate import SPATIAL, TEMPORAL, label_params
from stunet.nn.stunet import STUNet
from stunet.nn.t2i_unet import T2IUNet
from stunet.parallel import hlo


@dataclasses.dataclass
class ModelSummary:
  name: str
  video_shape: tuple[int, ...]  # b t h w c
  params_total: int
  params_spatial: int
  params_temporal: int
  forward_flops: float  # per forward pass of the whole batch
  t2i_forward_flops: float  # the T2I U-Net on every frame of the same video

  @property
  def flops_ratio(self) -> float:
    return self.forward_flops / self.t2i_forward_flops


def abstract_inputs(model_config: UNetConfig, batch: int, frames: int, resolution: int,
                    text_length: int, text_width: int):
  channels = model_config.in_channels + model_config.cond_channels
  return (jax.ShapeDtypeStruct((batch, frames, resolution, resolution, channels), jnp.float32),
          jax.ShapeDtypeStruct((batch,), jnp.float32),
          jax.ShapeDtypeStruct((batch, text_length, text_width), jnp.float32),
          jax.ShapeDtypeStruct((batch, text_length), jnp.bool_))


def count_params(params) -> dict[str, int]:
  """Parameter counts by label (`spatial` / `temporal`) and in total."""
  sizes = flax.traverse_util.flatten_dict(jax.tree.map(lambda p: p.size, nn.unbox(params)))
  labels = flax.traverse_util.flatten_dict(label_params(params))
  counts = {SPATIAL: 0, TEMPORAL: 0}
  for key, size in sizes.items():
    counts[labels[key]] += int(size)
  counts["total"] = counts[SPATIAL] + counts[TEMPORAL]
  return counts


def forward_flops(model: nn.Module, params, inputs) -> float:
  """FLOPs of one forward pass from XLA's cost analysis of the lowered computation."""
  return hlo.flops(jax.jit(lambda p, *a: model.apply({"params": p}, *a)).lower(params, *inputs))


def summarize(config: ml_collections.ConfigDict, name: str = "", batch: int = 1) -> ModelSummary:
  """Summarises `config.model` at the video size of `config.data` and text size of `config.text`."""
  model_config = UNetConfig.from_config(config.model)
  frames, resolution = int(config.data.frames), int(config.data.resolution)
  model_config.check_input(frames, resolution, resolution)
  inputs = abstract_inputs(model_config, batch, frames, resolution, int(config.text.max_length),
                           int(config.text.width))
  key = jax.random.key(0)
  stunet, t2i = STUNet(model_config), T2IUNet(model_config)
  stunet_params = jax.eval_shape(stunet.init, key, *inputs)["params"]
  t2i_params = jax.eval_shape(t2i.init, key, *inputs)["params"]
  counts = count_params(stunet_params)
  return ModelSummary(
      name=name, video_shape=inputs[0].shape, params_total=counts["total"],
      params_spatial=counts[SPATIAL], params_temporal=counts[TEMPORAL],
      forward_flops=forward_flops(stunet, nn.unbox(stunet_params), inputs),
      t2i_forward_flops=forward_flops(t2i, nn.unbox(t2i_params), inputs))


def format_summary(s: ModelSummary) -> str:
  b, t, h, w, c = s.video_shape
  return "\n".join([
      f"config: {s.name}   video: {b}x{t}x{h}x{w}x{c} (b t h w c)",
      f"parameters: total {s.params_total:,}  spatial (T2I) {s.params_spatial:,}  "
      f"temporal {s.params_temporal:,}",
      f"forward FLOPs (XLA cost analysis): STUNet {s.forward_flops:.4g}  "
      f"T2I per frame {s.t2i_forward_flops:.4g}  ratio {s.flops_ratio:.3f}",
  ])
