"""The `model` config section and its validated, hashable form `UNetConfig` (SPEC §2, §7).

`model_config()` gives the ConfigDict defaults that experiment configs override;
`UNetConfig.from_config(config.model)` checks every field once at start-up and raises a
`ValueError` naming the field, so a typo or a bad value never reaches tracing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import ml_collections

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
TEMPORAL_TEXT_OPTIONS = ("none", "film", "cross_attention", "film+cross_attention")
TEMPORAL_RESAMPLE_INITS = ("identity", "linear")
# What a rematerialised unit (a res block, transformer, temporal block) keeps from its forward
# pass for the backward pass (`model.remat_policy`, used when `model.remat` is on):
#   full           nothing: the unit's forward is recomputed whole (the least memory);
#   dots           matmul and convolution outputs (`jax.checkpoint_policies.dots_saveable`,
#                  which counts convolutions as dots): norms and activations are recomputed;
#   dots_no_batch  matmuls without batch dimensions (dense projections, the feed-forward):
#                  not convolutions, not attention's batched QK^T / PV;
#   off            everything (no remat at this level).
REMAT_POLICIES = ("full", "dots", "dots_no_batch", "off")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  """Architecture of the T2I U-Net and of its space-time inflation (the STUNet)."""

  # Spatial (text-to-image) U-Net; mirrors diffusers' UNet2DConditionModel options.
  in_channels: int = 3
  cond_channels: int = 0  # extra input channels for conditional fine-tuning (SPEC §5)
  out_channels: int = 3
  channels: int = 64
  channel_mult: tuple[int, ...] = (1, 2, 4)
  num_res_blocks: tuple[int, ...] = (2, 2, 2)
  attention_levels: tuple[bool, ...] = (False, True, True)
  mid_attention: bool = True
  cross_attention: bool = True
  transformer_depth: int = 1
  num_heads: tuple[int, ...] = (4, 4, 4)  # per level; ignored when head_dim > 0
  head_dim: int = 0  # > 0: heads = channels // head_dim at every level (and the mid block)
  mid_num_heads: int = 4
  # Per-level heads of the decoder's spatial attention; () = the same as num_heads. Imported
  # IF-style U-Nets need it: diffusers gives up block i attention_head_dim[i] un-reversed.
  up_num_heads: tuple[int, ...] = ()
  dropout: float = 0.0
  norm_groups: int = 32
  norm_eps: float = 1e-5
  attention_norm_eps: float = 1e-6
  resnet_time_scale_shift: str = "scale_shift"  # Imagen; diffusers SD uses "default"
  transformer_projection: str = "conv"  # "linear" = diffusers use_linear_projection
  ff_mult: int = 4
  noise_embed_flip_sin_to_cos: bool = True
  noise_embed_freq_shift: float = 0.0
  noise_embed_max_period: float = 10000.0
  zero_init_output: bool = True
  dtype: str = "float32"
  remat: bool = False
  # One of REMAT_POLICIES for every level, or one per level comma-separated ("full,full,dots,
  # dots": the fine levels, whose activations are the largest, recompute everything; the
  # coarse levels keep their matmul/conv outputs). The mid block follows the last level.
  remat_policy: str = "full"

  # Block variants of other public T2I U-Nets (see stunet.nn.if_blocks); the defaults are the
  # SD-style blocks above. DeepFloyd IF stage I: activation="gelu", spatial_attention="added_kv",
  # resample="resnet", resnet_skip_time_act=True, cross_attention_norm="group_norm",
  # text_proj_dim=<cross_attention_dim>, text_pooling="attention", embed_activation="gelu".
  activation: str = "silu"  # diffusers act_fn: res blocks, noise-embedding MLP, output head
  spatial_attention: str = "transformer"  # or "added_kv": attention over pixels + text K/V
  resample: str = "conv"  # or "resnet": res blocks with a 2x2 avg pool / nearest 2x inside
  resnet_skip_time_act: bool = False
  cross_attention_norm: str = "none"  # or "group_norm" on the text ("added_kv" attention only)
  cross_attention_norm_groups: int = 32
  text_proj_dim: int = 0  # >0: a linear map of the text embeddings to this width first
  text_pooling: str = "none"  # or "attention": pooled text added to the noise embedding
  text_pooling_heads: int = 64
  embed_activation: str = "none"  # applied to the (noise + pooled text) embedding

  # Temporal inflation (STUNet).
  temporal_factors: tuple[int, ...] = (2, 2)  # one per spatial downsampler; 1 = no time resampling
  temporal_conv: bool = True
  temporal_kernel: int = 3
  # Kernel of the temporal down/up-samplers; a level with factor f uses
  # max(temporal_resample_kernel, 2f - 1) (`temporal_resample_kernel_for`), the smallest kernel
  # whose stride-f windows read every frame (SPEC §2). Factor-2 levels keep 3.
  temporal_resample_kernel: int = 3
  # Their initialisation: "identity" (the paper: centre tap = I, nearest neighbour in time, so
  # at the coarse levels frame 2j+1 starts from frame 2j's features) or "linear" (beyond the
  # paper: a triangle filter down, linear interpolation up, over edge-replicated frames; every
  # frame reaches the coarse levels). Both leave a static clip exactly unchanged at init.
  temporal_resample_init: str = "identity"
  temporal_attention_levels: tuple[int, ...] = (-1,)  # level indices; -1 = coarsest
  temporal_attention_mid: bool = True
  temporal_attention_depth: int = 1
  temporal_attention_heads: int = 4
  temporal_position_encoding: str = "sinusoidal"  # or "none"
  # Text and noise level in the temporal layers (SPEC §2, beyond the paper): "none" (the
  # paper: temporal layers see features only), "film" (zero-init scale/shift of every temporal
  # conv block from the noise embedding + masked-mean caption), "cross_attention" (zero-init
  # cross-attention to the caption in every temporal attention block), or
  # "film+cross_attention". Every option is the identity at init, so inflation stays exact.
  temporal_text: str = "none"
  # How the 1-D temporal convolutions run (same parameters, same result to float rounding):
  # "conv" = one (k, 1, 1) 3-D convolution; "matmul" = k channel matmuls of frame-shifted
  # inputs (faster on XLA:CPU at small widths, ~20% more activation memory).
  temporal_conv_impl: str = "conv"
  # How the 3x3 spatial convolutions run (same parameters, same result to float rounding):
  # "auto" = as im2col matmuls on frames smaller than the kernel, where XLA swaps the conv's
  # operands and XLA:CPU falls back to a slow loop (`stunet.nn.layers.Conv2D`), otherwise a
  # convolution; "conv" = always a convolution.
  spatial_conv_impl: str = "auto"
  # The attention kernel (`stunet.nn.attention`): "auto" = cuDNN flash attention on GPUs for
  # bf16/fp16 and supported head dims, XLA elsewhere; "xla"; "cudnn" (an error where it does
  # not apply). Same parameters and the same function up to float rounding.
  attention_impl: str = "auto"

  # ---- derived values ------------------------------------------------------------------
  @property
  def num_levels(self) -> int:
    return len(self.channel_mult)

  def level_channels(self, level: int) -> int:
    return self.channels * self.channel_mult[level]

  def level_heads(self, level: int) -> tuple[int, int]:
    """(num_heads, head_dim) of the spatial attention at `level`."""
    c = self.level_channels(level)
    if self.head_dim:
      return c // self.head_dim, self.head_dim
    return self.num_heads[level], c // self.num_heads[level]

  def up_level_heads(self, level: int) -> tuple[int, int]:
    """(num_heads, head_dim) of the decoder's spatial attention at `level`."""
    if self.head_dim or not self.up_num_heads:
      return self.level_heads(level)
    c = self.level_channels(level)
    return self.up_num_heads[level], c // self.up_num_heads[level]

  def mid_heads(self) -> tuple[int, int]:
    c = self.level_channels(self.num_levels - 1)
    if self.head_dim:
      return c // self.head_dim, self.head_dim
    return self.mid_num_heads, c // self.mid_num_heads

  @property
  def spatial_factor(self) -> int:
    return 2 ** (self.num_levels - 1)

  @property
  def temporal_factor(self) -> int:
    total = 1
    for f in self.temporal_factors:
      total *= f
    return total

  def temporal_resample_kernel_for(self, factor: int) -> int:
    """Kernel of a temporal resampler with this factor: stride f reads every frame only with
    k >= 2f - 1 (f=4, k=3 would skip frames 4j+2), so at least that."""
    return max(self.temporal_resample_kernel, 2 * factor - 1)

  @property
  def temporal_film(self) -> bool:
    return self.temporal_text in ("film", "film+cross_attention")

  @property
  def temporal_cross_attention(self) -> bool:
    return self.temporal_text in ("cross_attention", "film+cross_attention")

  def has_temporal_attention(self, level: int) -> bool:
    levels = {l % self.num_levels for l in self.temporal_attention_levels}
    return level in levels

  def remat_policy_at(self, level: int) -> str:
    """The remat policy of `level` ('off' everywhere when `remat` is False)."""
    if not self.remat:
      return "off"
    names = [n.strip() for n in self.remat_policy.split(",")]
    return names[0] if len(names) == 1 else names[level]

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  # ---- construction ----------------------------------------------------------------------
  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict | dict[str, Any]) -> "UNetConfig":
    """Validates `config.model` and returns the hashable architecture description."""
    values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
      raise ValueError(f"Unknown field(s) in config.model: {', '.join('model.' + u for u in unknown)}."
                       f" Known fields: {', '.join(sorted(fields))}.")
    levels = len(values.get("channel_mult", cls.channel_mult))
    # Per-level fields accept a scalar for "the same at every level".
    for name in ("num_res_blocks", "num_heads"):
      if name in values and isinstance(values[name], int):
        values[name] = (values[name],) * levels
      elif name not in values:
        values[name] = (getattr(cls, name)[0],) * levels
    if isinstance(values.get("up_num_heads"), int):
      values["up_num_heads"] = (values["up_num_heads"],) * levels
    if "attention_levels" in values and isinstance(values["attention_levels"], bool):
      values["attention_levels"] = (values["attention_levels"],) * levels
    for name, f in fields.items():
      if name in values and isinstance(values[name], list):
        values[name] = tuple(values[name])
    cfg = cls(**values)
    cfg.validate()
    return cfg

  def validate(self):
    def fail(field, msg):
      raise ValueError(f"config.model.{field}={getattr(self, field)!r}: {msg}")

    L = self.num_levels
    if L < 1 or any((not isinstance(m, int)) or m < 1 for m in self.channel_mult):
      fail("channel_mult", "needs one positive integer per resolution level")
    per_level = ["num_res_blocks", "attention_levels"] + ([] if self.head_dim else ["num_heads"])
    for name in per_level:
      if len(getattr(self, name)) != L:
        fail(name, f"needs one entry per level ({L} levels from model.channel_mult)")
    if self.up_num_heads and not self.head_dim and len(self.up_num_heads) != L:
      fail("up_num_heads", f"needs one entry per level ({L} levels), or () for model.num_heads")
    if any((not isinstance(n, int)) or n < 1 for n in self.up_num_heads):
      fail("up_num_heads", "head counts must be positive integers")
    if any(n < 1 for n in self.num_res_blocks):
      fail("num_res_blocks", "each level needs at least one residual block")
    if len(self.temporal_factors) != L - 1:
      fail("temporal_factors", f"needs one factor per spatial downsampler ({L - 1} for {L} levels "
           "in model.channel_mult); use 1 for no temporal down-sampling")
    if any((not isinstance(f, int)) or f < 1 for f in self.temporal_factors):
      fail("temporal_factors", "factors must be positive integers (1 = none)")
    for name in ("temporal_kernel", "temporal_resample_kernel"):
      k = getattr(self, name)
      if k < 1 or k % 2 == 0:
        fail(name, "must be a positive odd number so the kernel has a centre tap")
    for l in self.temporal_attention_levels:
      if not -L <= l < L:
        fail("temporal_attention_levels", f"level {l} out of range for {L} levels")
    if self.resnet_time_scale_shift not in ("scale_shift", "default"):
      fail("resnet_time_scale_shift", "must be 'scale_shift' or 'default'")
    if self.transformer_projection not in ("conv", "linear"):
      fail("transformer_projection", "must be 'conv' or 'linear'")
    for name, allowed in (("activation", ("silu", "gelu")),
                          ("spatial_attention", ("transformer", "added_kv")),
                          ("resample", ("conv", "resnet")),
                          ("cross_attention_norm", ("none", "group_norm")),
                          ("text_pooling", ("none", "attention")),
                          ("embed_activation", ("none", "silu", "gelu")),
                          ("temporal_resample_init", TEMPORAL_RESAMPLE_INITS)):
      if getattr(self, name) not in allowed:
        fail(name, f"must be one of {allowed}")
    if self.cross_attention_norm != "none" and self.spatial_attention != "added_kv":
      fail("cross_attention_norm", "is only used by model.spatial_attention='added_kv'")
    if self.text_proj_dim < 0:
      fail("text_proj_dim", "must be >= 0 (0 = no text projection)")
    if self.text_pooling != "none" and self.text_pooling_heads < 1:
      fail("text_pooling_heads", "must be >= 1")
    if self.temporal_conv_impl not in ("matmul", "conv"):
      fail("temporal_conv_impl", "must be 'matmul' or 'conv'")
    if self.spatial_conv_impl not in ("auto", "conv"):
      fail("spatial_conv_impl", "must be 'auto' or 'conv'")
    if self.attention_impl not in ("auto", "xla", "cudnn", "splash"):
      fail("attention_impl", "must be 'auto', 'xla', 'cudnn' or 'splash'")
    policies = [n.strip() for n in str(self.remat_policy).split(",")]
    if any(n not in REMAT_POLICIES for n in policies):
      fail("remat_policy", f"must be one of {REMAT_POLICIES}, or one per level separated by "
           "commas")
    if len(policies) not in (1, L):
      fail("remat_policy", f"gives {len(policies)} policies for {L} levels (one for all levels, "
           "or one per level)")
    if self.temporal_text not in TEMPORAL_TEXT_OPTIONS:
      fail("temporal_text", f"must be one of {TEMPORAL_TEXT_OPTIONS}")
    if self.temporal_film and not self.temporal_conv:
      fail("temporal_text", "'film' modulates the temporal conv blocks; it needs "
           "model.temporal_conv=True")
    if self.temporal_cross_attention and not (
        (self.temporal_attention_levels or self.temporal_attention_mid)
        and self.temporal_attention_depth >= 1):
      fail("temporal_text", "'cross_attention' lives in the temporal attention blocks; it needs "
           "model.temporal_attention_levels or model.temporal_attention_mid, and "
           "model.temporal_attention_depth >= 1")
    if self.temporal_position_encoding not in ("sinusoidal", "none"):
      fail("temporal_position_encoding", "must be 'sinusoidal' or 'none'")
    if self.dtype not in _DTYPES:
      fail("dtype", f"must be one of {sorted(_DTYPES)}")
    if not 0.0 <= self.dropout < 1.0:
      fail("dropout", "must be in [0, 1)")
    for level in range(L):
      c = self.level_channels(level)
      if c % self.norm_groups:
        fail("norm_groups", f"level {level} has {c} channels (model.channels * model.channel_mult),"
             " not divisible by the number of groups")
      if self.attention_levels[level]:
        heads, dim = self.level_heads(level)
        if heads * dim != c:
          fail("num_heads" if not self.head_dim else "head_dim",
               f"level {level} has {c} channels, not divisible into heads")
        heads, dim = self.up_level_heads(level)
        if heads * dim != c:
          fail("up_num_heads", f"level {level} has {c} channels, not divisible into heads")
    c_mid = self.level_channels(L - 1)
    if self.temporal_attention_heads < 1 or c_mid % self.temporal_attention_heads:
      fail("temporal_attention_heads", f"must divide the coarsest level's {c_mid} channels")

  def check_input(self, frames: int | None, height: int, width: int):
    """Raises a ValueError naming the config fields when the video size does not fit."""
    f = self.spatial_factor
    if height % f or width % f:
      raise ValueError(
          f"Frame size {height}x{width} is not divisible by the U-Net's spatial down-sampling "
          f"factor {f} (2 ** (len(model.channel_mult) - 1), model.channel_mult="
          f"{self.channel_mult}); choose data.resolution as a multiple of {f}.")
    if frames is not None and frames % self.temporal_factor:
      raise ValueError(
          f"Number of frames {frames} is not divisible by the product of "
          f"model.temporal_factors={self.temporal_factors} (= {self.temporal_factor}); choose "
          f"data.frames as a multiple of {self.temporal_factor} or change model.temporal_factors.")


def model_config() -> ml_collections.ConfigDict:
  """Default `model` section: every field of `UNetConfig`, overridable from the command line."""
  defaults = UNetConfig()
  return ml_collections.ConfigDict(
      {f.name: getattr(defaults, f.name) for f in dataclasses.fields(UNetConfig)})
