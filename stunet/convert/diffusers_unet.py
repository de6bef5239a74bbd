"""Imports a local diffusers ``UNet2DConditionModel`` (safetensors) as our T2I U-Net (SPEC §2).

Lumiere inflates a *pre-trained* text-to-image U-Net. This module reads a diffusers model
directory (``config.json`` + ``diffusion_pytorch_model.safetensors``, or a sharded index) and
returns the ``model`` config values and the ``params`` of ``stunet.nn.t2i_unet.T2IUNet``,
parameter for parameter. Two block families are supported:

- Stable-Diffusion style: CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn,
  CrossAttnUpBlock2D / UpBlock2D (ResnetBlock2D, Transformer2DModel with GEGLU feed-forward,
  conv down/upsamplers).
- DeepFloyd IF stage I style: SimpleCrossAttnDownBlock2D / ResnetDownsampleBlock2D,
  UNetMidBlock2DSimpleCrossAttn, SimpleCrossAttnUpBlock2D / ResnetUpsampleBlock2D, the
  ``encoder_hid_proj`` text projection and ``addition_embed_type="text"`` pooling.

Nothing is downloaded and torch is not needed. Every ``UNet2DConditionModel`` option is
handled, checked to be at its default, or refused: unsupported options and unknown block
types raise ``ValueError`` naming them. Options that diffusers passes to one block family only
(``resnet_skip_time_act``, ``use_linear_projection``, ...) are ignored for the other family,
as diffusers ignores them; every tensor of the file is mapped (a missing one
raises ``MissingTensorError``, a leftover one ``UnexpectedTensorError``).

The mapping is driven by our own parameter tree (``jax.eval_shape`` of ``T2IUNet.init``):
each of our leaves names its diffusers tensor by a fixed renaming of its path, so a config
that does not describe the file fails on the first tensor that is missing, extra or shaped
differently.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stunet.convert.safetensors_io import CheckpointError
from stunet.convert.safetensors_io import CheckpointTensors
from stunet.nn.config import UNetConfig
from stunet.nn.t2i_unet import T2IUNet

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# Block types by family. A level has spatial attention iff its down block is an attention
# block; the up block at the same level must agree (our config has one flag per level).
_SD_DOWN = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
_SD_UP = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}
_SD_MID = "UNetMidBlock2DCrossAttn"
_IF_DOWN = {"SimpleCrossAttnDownBlock2D": True, "ResnetDownsampleBlock2D": False}
_IF_UP = {"SimpleCrossAttnUpBlock2D": True, "ResnetUpsampleBlock2D": False}
_IF_MID = "UNetMidBlock2DSimpleCrossAttn"

_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu"}

# config.json keys that do not change the forward pass (bookkeeping, inference-only hints).
_IRRELEVANT_KEYS = frozenset({
    "_class_name", "_diffusers_version", "_name_or_path", "_use_default_values",
    "sample_size", "dropout", "upcast_attention",  # upcast: we compute attention in float32
})

# Keys whose value must equal the given default for the model to be representable.
# (`num_attention_heads`: diffusers' UNet2DConditionModel itself refuses any other value.)
_MUST_EQUAL = {
    "center_input_sample": False,
    "class_embed_type": None,
    "num_class_embeds": None,
    "class_embeddings_concat": False,
    "projection_class_embeddings_input_dim": None,
    "addition_time_embed_dim": None,
    "time_embedding_type": "positional",
    "time_cond_proj_dim": None,
    "timestep_post_act": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "mid_block_scale_factor": 1,
    "attention_type": "default",
    "num_attention_heads": None,
    "reverse_transformer_layers_per_block": None,
}

# Keys that diffusers passes only to one block family: the other family's blocks never see
# them, so there any value builds the same network (e.g. `resnet_skip_time_act` reaches
# ResnetDownsampleBlock2D / SimpleCrossAttn*Block2D / UNetMidBlock2DSimpleCrossAttn /
# ResnetUpsampleBlock2D only; `use_linear_projection` reaches Transformer2DModel only).
_IF_ONLY_KEYS = frozenset({"resnet_skip_time_act", "resnet_out_scale_factor",
                           "cross_attention_norm", "mid_block_only_cross_attention"})
_SD_ONLY_KEYS = frozenset({"use_linear_projection", "transformer_layers_per_block",
                           "downsample_padding", "dual_cross_attention"})

# Keys read below.
_READ_KEYS = frozenset({
    "in_channels", "out_channels", "flip_sin_to_cos", "freq_shift", "down_block_types",
    "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels",
    "layers_per_block", "downsample_padding", "act_fn", "norm_num_groups", "norm_eps",
    "cross_attention_dim", "transformer_layers_per_block", "encoder_hid_dim",
    "encoder_hid_dim_type", "attention_head_dim", "use_linear_projection",
    "addition_embed_type", "resnet_time_scale_shift", "resnet_skip_time_act",
    "time_embedding_dim", "time_embedding_act_fn", "mid_block_only_cross_attention",
    "cross_attention_norm", "addition_embed_type_num_heads", "resnet_out_scale_factor",
    "dual_cross_attention",
})

# Every UNet2DConditionModel.__init__ argument is in exactly one of these (tested against the
# installed diffusers, so a new diffusers option is refused until it is looked at).
HANDLED_KEYS = _IRRELEVANT_KEYS | set(_MUST_EQUAL) | _READ_KEYS

# diffusers UNet2DConditionModel defaults for keys an older config.json may omit.
_DEFAULTS = {
    "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "mid_block_type": _SD_MID, "only_cross_attention": False, "layers_per_block": 2,
    "downsample_padding": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 1280, "transformer_layers_per_block": 1, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "attention_head_dim": 8, "use_linear_projection": False,
    "addition_embed_type": None, "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False, "time_embedding_dim": None, "time_embedding_act_fn": None,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None,
    "addition_embed_type_num_heads": 64, "resnet_out_scale_factor": 1.0,
    "dual_cross_attention": False,
}


def _per_level(value, levels: int, key: str) -> list:
  if isinstance(value, (list, tuple)):
    if len(value) != levels:
      raise ValueError(f"config.json: {key}={value!r} needs one entry per block ({levels}).")
    return list(value)
  return [value] * levels


def _uniform(value, levels: int, key: str, why: str):
  values = _per_level(value, levels, key)
  if any(v != values[0] for v in values):
    raise ValueError(f"config.json: {key}={value!r} differs between blocks; {why}.")
  return values[0]


def _sd_heads(value, channels: int, level: int, used: bool) -> int:
  """Head count of an SD-style level (attention_head_dim[level] means heads there)."""
  if not used:
    return int(value) if isinstance(value, int) and value >= 1 else 1
  if not isinstance(value, int) or value < 1 or channels % value:
    raise ValueError(f"config.json: attention_head_dim[{level}]={value!r} (the head count of an "
                     f"SD-style block) does not divide block_out_channels[{level}]={channels}.")
  return value


def _if_heads(value, channels: int, level: int, index: int, used: bool) -> int:
  """channels // head width of an IF-style attention at `level` reading attention_head_dim[index]."""
  dim = channels if value is None else value
  if not isinstance(dim, int) or dim < 1:
    raise ValueError(f"config.json: attention_head_dim[{index}]={value!r} is not a positive "
                     "head width.")
  if used and channels % dim:
    raise ValueError(f"config.json: attention_head_dim[{index}]={dim} does not divide "
                     f"block_out_channels[{level}]={channels} (the IF-style block at that "
                     "level has channels // head width heads of that width).")
  return max(1, channels // dim)


def model_config_from_diffusers(hf: dict[str, Any]) -> dict[str, Any]:
  """Our ``model`` config values for a diffusers ``UNet2DConditionModel`` config.json.

  The spatial fields describe the checkpoint exactly. Temporal (inflation) fields keep the
  ``UNetConfig`` defaults, with ``temporal_factors`` sized to the number of levels (2 per
  downsampler); the video stage's config chooses its own.

  Raises:
    ValueError: naming the option or block type that our U-Net cannot represent.
  """
  class_name = hf.get("_class_name", "UNet2DConditionModel")
  if class_name != "UNet2DConditionModel":
    raise ValueError(f"config.json: _class_name={class_name!r} is not supported; expected "
                     "'UNet2DConditionModel'.")
  unknown = sorted(set(hf) - HANDLED_KEYS)
  if unknown:
    raise ValueError(f"config.json: unknown or unsupported option(s) {unknown}.")
  c = {**_DEFAULTS, **{k: v for k, v in hf.items() if k in _READ_KEYS}}

  down_types, up_types = list(c["down_block_types"]), list(c["up_block_types"])
  channels_per_level = [int(x) for x in c["block_out_channels"]]
  levels = len(channels_per_level)
  if len(down_types) != levels or len(up_types) != levels:
    raise ValueError(f"config.json: down_block_types {down_types} and up_block_types "
                     f"{up_types} need one entry per block_out_channels {channels_per_level}.")
  if down_types[0] in _IF_DOWN or c["mid_block_type"] == _IF_MID:
    family, down_map, up_map, mid_type = "if", _IF_DOWN, _IF_UP, _IF_MID
  else:
    family, down_map, up_map, mid_type = "sd", _SD_DOWN, _SD_UP, _SD_MID
  family_name = "DeepFloyd-IF-style" if family == "if" else "SD-style"
  # What the other family's blocks would read is never built: back to the default.
  for key in _SD_ONLY_KEYS if family == "if" else _IF_ONLY_KEYS:
    c[key] = _DEFAULTS[key]
  for key, required in _MUST_EQUAL.items():
    if key in hf and hf[key] != required:
      raise ValueError(f"config.json: {key}={hf[key]!r} is not supported (only {required!r}).")
  for key in ("resnet_out_scale_factor", "dual_cross_attention"):
    if c[key] != _DEFAULTS[key]:
      raise ValueError(f"config.json: {key}={c[key]!r} is not supported for a {family_name} "
                       f"U-Net (only {_DEFAULTS[key]!r}).")
  for where, types, known in (("down_block_types", down_types, down_map),
                              ("up_block_types", up_types, up_map)):
    bad = [t for t in types if t not in known]
    if bad:
      supported = sorted(_SD_DOWN) + sorted(_IF_DOWN) if where.startswith("down") else (
          sorted(_SD_UP) + sorted(_IF_UP))
      raise ValueError(f"config.json: {where} contains unsupported block type(s) {bad} for a "
                       f"{family_name} U-Net; supported: {supported} (one family per model).")
  if c["mid_block_type"] != mid_type:
    raise ValueError(f"config.json: mid_block_type={c['mid_block_type']!r} is not supported "
                     f"for a {family_name} U-Net; expected {mid_type!r}.")
  attention_levels = [down_map[t] for t in down_types]
  for level in range(levels):
    up_type = up_types[levels - 1 - level]
    if up_map[up_type] != attention_levels[level]:
      raise ValueError(
          f"config.json: level {level} has down block {down_types[level]!r} but up block "
          f"{up_type!r} (up_block_types[{levels - 1 - level}]); our U-Net needs attention in "
          "both or neither.")

  c0 = channels_per_level[0]
  if any(ch % c0 for ch in channels_per_level):
    raise ValueError(f"config.json: block_out_channels={channels_per_level} are not multiples "
                     f"of the first ({c0}); our config stores channels * channel_mult.")
  act = c["act_fn"]
  if act not in _ACTIVATIONS:
    raise ValueError(f"config.json: act_fn={act!r} is not supported; supported: "
                     f"{sorted(_ACTIVATIONS)}.")
  embed_act = c["time_embedding_act_fn"]
  if embed_act is not None and embed_act not in _ACTIVATIONS:
    raise ValueError(f"config.json: time_embedding_act_fn={embed_act!r} is not supported; "
                     f"supported: None, {sorted(_ACTIVATIONS)}.")
  if c["time_embedding_dim"] not in (None, 4 * c0):
    raise ValueError(f"config.json: time_embedding_dim={c['time_embedding_dim']} is not "
                     f"supported; our noise embedding is 4 * block_out_channels[0] = {4 * c0}.")
  if c["norm_num_groups"] is None:
    raise ValueError("config.json: norm_num_groups=None (no output GroupNorm) is not supported.")
  only_cross = _per_level(c["only_cross_attention"], levels, "only_cross_attention")
  if any(only_cross) or c["mid_block_only_cross_attention"]:
    raise ValueError("config.json: only_cross_attention / mid_block_only_cross_attention=True is "
                     "not supported (our attention blocks always self-attend).")
  cross_dim = _uniform(c["cross_attention_dim"], levels, "cross_attention_dim",
                       "our U-Net gives every block the same text width")
  depth = _uniform(c["transformer_layers_per_block"], levels, "transformer_layers_per_block",
                   "model.transformer_depth is one number")
  if not isinstance(depth, int) or depth < 1:
    raise ValueError(f"config.json: transformer_layers_per_block="
                     f"{c['transformer_layers_per_block']!r} is not supported (one positive "
                     "number of transformer layers for every block).")
  hid_type, hid_dim = c["encoder_hid_dim_type"], c["encoder_hid_dim"]
  if hid_type is None and hid_dim is not None:
    hid_type = "text_proj"  # diffusers' default when only encoder_hid_dim is given
  if hid_type not in (None, "text_proj"):
    raise ValueError(f"config.json: encoder_hid_dim_type={hid_type!r} is not supported; "
                     "supported: None, 'text_proj'.")
  if hid_type == "text_proj" and hid_dim is None:
    raise ValueError("config.json: encoder_hid_dim_type='text_proj' needs encoder_hid_dim.")
  if c["addition_embed_type"] not in (None, "text"):
    raise ValueError(f"config.json: addition_embed_type={c['addition_embed_type']!r} is not "
                     "supported; supported: None, 'text' (IF's pooled text embedding).")
  if c["resnet_time_scale_shift"] not in ("default", "scale_shift"):
    raise ValueError(f"config.json: resnet_time_scale_shift={c['resnet_time_scale_shift']!r} "
                     "is not supported; supported: 'default', 'scale_shift'.")

  head_values = _per_level(c["attention_head_dim"], levels, "attention_head_dim")
  # Which attention reads which entry (UNet2DConditionModel.__init__): down block i and the
  # mid block (entry -1) read entry i; up block i (level levels-1-i) reads the reversed head
  # counts for SD-style blocks but attention_head_dim[i] *un-reversed* for IF-style ones.
  if family == "sd":
    # diffusers' historical naming: for these blocks `attention_head_dim` is the head count,
    # and the up blocks take it reversed: one count per level serves encoder and decoder.
    num_heads = [_sd_heads(head_values[level], channels_per_level[level], level,
                           attention_levels[level] or level == levels - 1)
                 for level in range(levels)]
    up_heads = list(num_heads)
    if c["downsample_padding"] != 1:
      raise ValueError(f"config.json: downsample_padding={c['downsample_padding']} is not "
                       "supported (our strided conv pads 1 on each side).")
  else:
    # Simple cross-attention blocks use it as the per-head width: heads = channels // dim.
    if head_values[-1] is None:
      raise ValueError("config.json: attention_head_dim[-1]=None is not supported (the mid "
                       "block needs a head width).")
    num_heads = [_if_heads(head_values[level], channels_per_level[level], level, level,
                           attention_levels[level] or level == levels - 1)
                 for level in range(levels)]
    up_heads = [_if_heads(head_values[levels - 1 - level], channels_per_level[level], level,
                          levels - 1 - level, True) if attention_levels[level]
                else num_heads[level] for level in range(levels)]
    if c["cross_attention_norm"] not in (None, "group_norm"):
      raise ValueError(f"config.json: cross_attention_norm={c['cross_attention_norm']!r} is not "
                       "supported; supported: None, 'group_norm'.")

  values = dataclasses.asdict(UNetConfig())
  values.update(
      in_channels=int(c["in_channels"]), out_channels=int(c["out_channels"]), channels=c0,
      channel_mult=tuple(ch // c0 for ch in channels_per_level),
      num_res_blocks=tuple(int(n) for n in _per_level(c["layers_per_block"], levels,
                                                       "layers_per_block")),
      attention_levels=tuple(attention_levels), mid_attention=True, cross_attention=True,
      transformer_depth=int(depth), num_heads=tuple(num_heads), head_dim=0,
      mid_num_heads=num_heads[-1], up_num_heads=() if up_heads == num_heads else tuple(up_heads),
      dropout=0.0, norm_groups=int(c["norm_num_groups"]),
      norm_eps=float(c["norm_eps"]), attention_norm_eps=1e-6,  # Transformer2DModel's GroupNorm
      resnet_time_scale_shift=c["resnet_time_scale_shift"],
      transformer_projection="linear" if c["use_linear_projection"] else "conv",
      ff_mult=4, noise_embed_flip_sin_to_cos=bool(c["flip_sin_to_cos"]),
      noise_embed_freq_shift=float(c["freq_shift"]), noise_embed_max_period=10000.0,
      activation=_ACTIVATIONS[act],
      spatial_attention="added_kv" if family == "if" else "transformer",
      resample="resnet" if family == "if" else "conv",
      resnet_skip_time_act=bool(c["resnet_skip_time_act"]),
      cross_attention_norm=c["cross_attention_norm"] or "none",
      cross_attention_norm_groups=32,  # diffusers Attention's default, not in config.json
      text_proj_dim=int(cross_dim) if hid_type == "text_proj" else 0,
      text_pooling="attention" if c["addition_embed_type"] == "text" else "none",
      text_pooling_heads=int(c["addition_embed_type_num_heads"]),
      embed_activation=_ACTIVATIONS[embed_act] if embed_act else "none",
      temporal_factors=(2,) * (levels - 1),
  )
  if values["temporal_attention_heads"] and channels_per_level[-1] % values[
      "temporal_attention_heads"]:
    values["temporal_attention_heads"] = 1
  UNetConfig.from_config(values)  # fails here, naming the field, if something is off
  return values


def text_width(hf: dict[str, Any]) -> int:
  """Width of the text embeddings the checkpoint expects (encoder_hid_dim or cross dim)."""
  if hf.get("encoder_hid_dim") is not None:
    return int(hf["encoder_hid_dim"])
  dim = hf.get("cross_attention_dim", _DEFAULTS["cross_attention_dim"])
  return int(dim[0] if isinstance(dim, (list, tuple)) else dim)


# ---- tensor names ---------------------------------------------------------------------------
# Our path (modules joined by "/") -> diffusers module prefix, applied in order.
_MODULE_RULES = (
    (r"^noise_embed/", "time_embedding/"),
    (r"^norm_out/", "conv_norm_out/"),
    (r"^text_proj/", "encoder_hid_proj/"),
    (r"^text_pool/", "add_embedding/"),
    (r"^down_(\d+)/res_(\d+)/", r"down_blocks/\1/resnets/\2/"),
    (r"^down_(\d+)/attn_(\d+)/", r"down_blocks/\1/attentions/\2/"),
    (r"^down_(\d+)/downsample/", r"down_blocks/\1/downsamplers/0/"),
    (r"^mid/res_(\d+)/", r"mid_block/resnets/\1/"),
    (r"^mid/attn_(\d+)/", r"mid_block/attentions/\1/"),
    (r"/block_(\d+)/", r"/transformer_blocks/\1/"),
    (r"/to_out/", "/to_out/0/"),
    (r"/ff/geglu/", "/ff/net/0/proj/"),
    (r"/ff/proj_out/", "/ff/net/2/"),
)
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias",
               "positional_embedding": "positional_embedding"}


def diffusers_name(path: tuple[str, ...], num_levels: int) -> str:
  """The diffusers tensor name of our parameter at `path` (e.g. ('down_0', 'res_0', ...))."""
  *modules, leaf = path
  name = "/".join(modules) + "/"
  match = re.match(r"^up_(\d+)/", name)
  if match:  # our up levels are indexed by resolution; diffusers' up_blocks run coarse -> fine
    block = num_levels - 1 - int(match.group(1))
    name = f"up_blocks/{block}/" + name[match.end():]
    name = re.sub(r"^(up_blocks/\d+/)res_(\d+)/", r"\1resnets/\2/", name)
    name = re.sub(r"^(up_blocks/\d+/)attn_(\d+)/", r"\1attentions/\2/", name)
    name = re.sub(r"^(up_blocks/\d+/)upsample/", r"\1upsamplers/0/", name)
  for pattern, replacement in _MODULE_RULES:
    name = re.sub(pattern, replacement, name)
  if leaf not in _LEAF_NAMES:
    raise CheckpointError(f"No diffusers name for our parameter {'/'.join(path)!r}.")
  return (name + _LEAF_NAMES[leaf]).replace("/", ".")


def _to_ours(array: np.ndarray, path: tuple[str, ...], target_shape: tuple[int, ...]
             ) -> np.ndarray:
  """torch layout -> ours: conv OIHW -> HWIO, linear [out, in] -> [in, out]."""
  if path[-1] == "kernel" and array.ndim == 4:
    return np.transpose(array, (2, 3, 1, 0))
  if path[-1] == "kernel" and array.ndim == 2 and len(target_shape) == 2:
    return array.T
  if path[-1] == "positional_embedding":  # torch stores [1, d]
    return array.reshape(-1)
  return array


def abstract_params(config: UNetConfig, text_dim: int, text_len: int = 8) -> Any:
  """The boxed `params` tree of `T2IUNet(config)` as shapes only (no memory, no compute)."""
  size = config.spatial_factor
  x = jnp.zeros((1, size, size, config.in_channels + config.cond_channels), jnp.float32)
  text = jnp.zeros((1, text_len, text_dim), jnp.float32)
  variables = jax.eval_shape(T2IUNet(config).init, jax.random.key(0), x, jnp.zeros((1,)), text,
                             jnp.ones((1, text_len), bool))
  return variables["params"]


def convert_unet(tensors: CheckpointTensors, config: UNetConfig, text_dim: int,
                 param_dtype: Any = np.float32) -> dict[str, Any]:
  """Fills `T2IUNet(config)`'s params (boxed, with logical axis names) from the checkpoint.

  Raises:
    MissingTensorError: a parameter's diffusers tensor is absent.
    CheckpointError: a tensor's shape differs from our parameter's (names both).
    UnexpectedTensorError: the file holds tensors that no parameter consumed.
  """
  target = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_params(config, text_dim)))
  out = {}
  for path, leaf in target.items():
    shape = tuple(nn.unbox(leaf).shape)
    name = diffusers_name(path, config.num_levels)
    array = _to_ours(tensors.take(name), path, shape)
    if array.shape != shape:
      raise CheckpointError(
          f"Tensor {name!r} in {tensors.source} has shape {list(tensors.info(name).shape)}, "
          f"which does not give our parameter {'/'.join(path)} of shape {list(shape)}; "
          "config.json does not describe this checkpoint.")
    value = np.asarray(array, dtype=param_dtype)
    out[path] = leaf.replace_boxed(value) if isinstance(leaf, nn.meta.AxisMetadata) else value
  tensors.check_all_consumed()
  return flax.traverse_util.unflatten_dict(out)


def load_diffusers_unet(model_dir: str, param_dtype: Any = np.float32
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads a local diffusers U-Net directory -> (model config values, T2IUNet params).

  `UNetConfig.from_config(values)` gives the architecture; apply with
  `T2IUNet(cfg).apply({'params': params}, x [b h w c], timesteps [b], text [b L d], mask)`.
  The text width is `text_width(config.json)` (the T5/CLIP hidden size the model expects).
  """
  config_path = os.path.join(model_dir, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"No config.json in {model_dir!r}: expected a diffusers "
                            "UNet2DConditionModel directory (config.json + "
                            f"{WEIGHTS_NAME}).")
  with open(config_path, encoding="utf-8") as f:
    hf = json.load(f)
  values = model_config_from_diffusers(hf)
  tensors = CheckpointTensors.from_directory(model_dir, WEIGHTS_NAME)
  params = convert_unet(tensors, UNetConfig.from_config(values), text_width(hf), param_dtype)
  return values, params
