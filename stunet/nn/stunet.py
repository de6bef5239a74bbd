"""The Space-Time U-Net (STUNet, SPEC §2): a T2I U-Net inflated with temporal layers.

One wiring serves both models. With `temporal=False` it is the pixel-space T2I U-Net
(`T2IUNet`), which treats every frame of a video independently. With `temporal=True`, the
temporal layers of `stunet.nn.temporal` are interleaved:

  down level l:  [res_j, attn_j?, temporal_j] * n_l, downsample, temporal_down (factor f_l)
  mid:           res_0, attn_0?, temporal_0 (conv + attention stack), res_1, temporal_1
  up level l:    [concat skip, res_j, attn_j?, temporal_j] * (n_l + 1), upsample, temporal_up

`temporal_j` holds a temporal conv block and, at the levels in
`model.temporal_attention_levels`, a stack of temporal attention blocks. Every temporal
module's name starts with "temporal", which is how `stunet.nn.inflate.label_params` tells
the trainable temporal weights from the frozen spatial ones. Spatial module names and their
nesting are identical with and without inflation, so T2I parameters drop into place.

The spatial units are SD-style (`stunet.nn.blocks`: transformers, conv resamplers) or, with
`model.spatial_attention="added_kv"` / `model.resample="resnet"`, DeepFloyd-IF-style
(`stunet.nn.if_blocks`; `downsample` / `upsample` are then res blocks); the temporal layers
are inserted the same way around either.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import blocks
from stunet.nn import if_blocks
from stunet.nn import layers
from stunet.nn import temporal as temporal_layers
from stunet.nn.config import UNetConfig
from stunet.parallel import sharding as sharding_lib

Dtype = Any

# Logical names of the video activations `b t h w c` (mapped to mesh axes by config rules).
ACTIVATION_AXES = ("activation_batch", "activation_frames", "activation_height",
                   "activation_width", "activation_channels")


def zero_cond_channels_kernel_init(num_base_channels: int):
  """conv_in init whose extra conditioning input channels are zero (SPEC §5).

  With zeros on the new channels the conditional model starts exactly as the unconditional
  one, whatever the conditioning video and mask contain.
  """
  base_init = layers.default_kernel_init()

  def init(key, shape, dtype=jnp.float32):
    kernel = base_init(key, shape, dtype)
    return kernel.at[:, :, num_base_channels:, :].set(0)

  return init


def _constrain(x):
  # The project's shape-aware conversion, not flax's: a rule may name a mesh axis this mesh
  # lacks (`context`) or one that does not divide the dim (the coarse levels' frames).
  return sharding_lib.constrain(x, ACTIVATION_AXES)


_REMAT_POLICY_FNS = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _maybe_remat(module_cls, config: UNetConfig, level: int):
  """`module_cls` rematerialised under the policy of `level` (`model.remat_policy`)."""
  policy = config.remat_policy_at(level)
  if policy == "off":
    return module_cls
  return nn.remat(module_cls, policy=_REMAT_POLICY_FNS[policy])


class TemporalMixing(nn.Module):
  """The temporal layers after one spatial unit: a conv block, then optional attention.

  They see the noise embedding and the caption only with `model.temporal_text` (SPEC §2,
  beyond the paper); with "none" they see the features alone, as in the paper.
  """

  config: UNetConfig
  with_attention: bool
  deterministic: bool = True
  level: int = 0  # the U-Net level it sits at (its remat policy)

  @nn.compact
  def __call__(self, x, emb, text, text_mask):  # x: b t h w c, emb: b d, text: b L d'
    cfg = self.config
    kw = dict(dtype=cfg.compute_dtype)
    if cfg.temporal_conv:
      film_inputs = (emb, text, text_mask) if cfg.temporal_film else ()
      x = _maybe_remat(temporal_layers.TemporalConvBlock, cfg, self.level)(
          cfg.temporal_kernel, cfg.norm_groups, cfg.norm_eps, cfg.dropout, self.deterministic,
          cfg.temporal_conv_impl, cfg.temporal_film, name="conv_block", **kw)(x, *film_inputs)
    if self.with_attention:
      text_inputs = (text, text_mask) if cfg.temporal_cross_attention else ()
      for i in range(cfg.temporal_attention_depth):
        x = _maybe_remat(temporal_layers.TemporalAttentionBlock, cfg, self.level)(
            cfg.temporal_attention_heads, cfg.temporal_position_encoding, cfg.ff_mult,
            cfg.dropout, self.deterministic, cfg.temporal_cross_attention, cfg.attention_impl,
            name=f"attention_{i}", **kw)(x, *text_inputs)
    return x


def _needs_temporal_mixing(config: UNetConfig, with_attention: bool) -> bool:
  return config.temporal_conv or with_attention


class _SpatialUnit(nn.Module):
  """Shared construction of one res block + optional transformer at a given level."""

  config: UNetConfig
  deterministic: bool = True

  def res(self, features: int, name: str, resample: str = "none"):
    cfg = self.config
    return _maybe_remat(blocks.ResBlock, cfg, self.unit_level)(
        features, cfg.norm_groups, cfg.norm_eps, cfg.resnet_time_scale_shift == "scale_shift",
        cfg.dropout, self.deterministic, activation=cfg.activation,
        skip_time_act=cfg.resnet_skip_time_act, resample=resample,
        conv_impl=cfg.spatial_conv_impl, dtype=cfg.compute_dtype, name=name)

  def transformer(self, heads: tuple[int, int], name: str):
    """The spatial attention unit: an SD-style transformer or IF-style added-K/V attention."""
    cfg = self.config
    if cfg.spatial_attention == "added_kv":
      return _maybe_remat(if_blocks.AddedKVAttention, cfg, self.unit_level)(
          heads[0], heads[1], cfg.norm_groups, cfg.cross_attention_norm,
          cfg.cross_attention_norm_groups, cfg.attention_impl, dtype=cfg.compute_dtype,
          name=name)
    return _maybe_remat(blocks.SpatialTransformer, cfg, self.unit_level)(
        heads[0], heads[1], cfg.transformer_depth, cfg.cross_attention,
        cfg.transformer_projection, cfg.ff_mult, cfg.norm_groups, cfg.attention_norm_eps,
        cfg.dropout, self.deterministic, cfg.attention_impl, dtype=cfg.compute_dtype,
        name=name)

  @property
  def unit_level(self) -> int:
    """The level this unit's blocks sit at: the mid block counts as the last level."""
    return getattr(self, "level", self.config.num_levels - 1)

  def temporal_mixing(self, with_attention: bool, name: str):
    return TemporalMixing(self.config, with_attention, self.deterministic, self.unit_level,
                          name=name)


class DownLevel(_SpatialUnit):
  """One resolution level of the encoder; returns the features and the skips it pushes."""

  level: int = 0
  temporal: bool = True

  @nn.compact
  def __call__(self, x, emb, text, text_mask):
    cfg, level = self.config, self.level
    features = cfg.level_channels(level)
    with_tattn = cfg.has_temporal_attention(level)
    skips = []
    for j in range(cfg.num_res_blocks[level]):
      x = self.res(features, f"res_{j}")(x, emb)
      if cfg.attention_levels[level]:
        x = self.transformer(cfg.level_heads(level), f"attn_{j}")(x, text, text_mask)
      if self.temporal and _needs_temporal_mixing(cfg, with_tattn):
        x = self.temporal_mixing(with_tattn, f"temporal_{j}")(x, emb, text, text_mask)
      x = _constrain(x)
      skips.append(x)
    if level < cfg.num_levels - 1:
      if cfg.resample == "resnet":
        x = self.res(features, "downsample", resample="down")(x, emb)
      else:
        x = blocks.Downsample(features, cfg.spatial_conv_impl, dtype=cfg.compute_dtype,
                              name="downsample")(x)
      factor = cfg.temporal_factors[level]
      if self.temporal and factor > 1:
        x = temporal_layers.TemporalDownsample(factor, cfg.temporal_resample_kernel_for(factor),
                                               cfg.temporal_conv_impl,
                                               init_scheme=cfg.temporal_resample_init,
                                               dtype=cfg.compute_dtype, name="temporal_down")(x)
      x = _constrain(x)
      skips.append(x)
    return x, skips


class MidBlock(_SpatialUnit):
  """res, attention, temporal (conv + attention stack), res, temporal conv."""

  temporal: bool = True

  @nn.compact
  def __call__(self, x, emb, text, text_mask):
    cfg = self.config
    features = cfg.level_channels(cfg.num_levels - 1)
    x = self.res(features, "res_0")(x, emb)
    if cfg.mid_attention:
      x = self.transformer(cfg.mid_heads(), "attn_0")(x, text, text_mask)
    if self.temporal and _needs_temporal_mixing(cfg, cfg.temporal_attention_mid):
      x = self.temporal_mixing(cfg.temporal_attention_mid, "temporal_0")(x, emb, text, text_mask)
    x = self.res(features, "res_1")(x, emb)
    if self.temporal and cfg.temporal_conv:
      x = self.temporal_mixing(False, "temporal_1")(x, emb, text, text_mask)
    return _constrain(x)


class UpLevel(_SpatialUnit):
  """One resolution level of the decoder, consuming `num_res_blocks + 1` skips."""

  level: int = 0
  temporal: bool = True

  @nn.compact
  def __call__(self, x, skips: Sequence[Any], emb, text, text_mask):
    cfg, level = self.config, self.level
    features = cfg.level_channels(level)
    with_tattn = cfg.has_temporal_attention(level)
    skips = list(skips)
    for j in range(cfg.num_res_blocks[level] + 1):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = self.res(features, f"res_{j}")(x, emb)
      if cfg.attention_levels[level]:
        x = self.transformer(cfg.up_level_heads(level), f"attn_{j}")(x, text, text_mask)
      if self.temporal and _needs_temporal_mixing(cfg, with_tattn):
        x = self.temporal_mixing(with_tattn, f"temporal_{j}")(x, emb, text, text_mask)
      x = _constrain(x)
    if level > 0:
      if cfg.resample == "resnet":
        x = self.res(features, "upsample", resample="up")(x, emb)
      else:
        x = blocks.Upsample(features, cfg.spatial_conv_impl, dtype=cfg.compute_dtype,
                            name="upsample")(x)
      factor = cfg.temporal_factors[level - 1]
      if self.temporal and factor > 1:
        x = temporal_layers.TemporalUpsample(factor, cfg.temporal_resample_kernel_for(factor),
                                             cfg.temporal_conv_impl,
                                             init_scheme=cfg.temporal_resample_init,
                                             dtype=cfg.compute_dtype, name="temporal_up")(x)
      x = _constrain(x)
    return x


class STUNet(nn.Module):
  """Denoiser `(x_t, noise_cond, text, text_mask) -> prediction` on videos `b t h w c`.

  Attributes:
    config: the validated architecture (`UNetConfig.from_config(config.model)`).
    temporal: False gives the T2I U-Net (see `T2IUNet`): no temporal layers, frames are
      processed independently, and 4-D image input `b h w c` is accepted.
  """

  config: UNetConfig
  temporal: bool = True

  @nn.compact
  def __call__(self, x, noise_cond, text, text_mask, train: bool = False):
    """x: `b t h w c` (or `b h w c` without temporal layers); noise_cond: `[b]` floats;
    text: `b L d` embeddings; text_mask: `b L` bool (True = real token)."""
    cfg = self.config
    image_input = x.ndim == 4
    if image_input:
      if self.temporal:
        raise ValueError(f"STUNet expects a video [b, t, h, w, c], got shape {x.shape}; use "
                         "T2IUNet (temporal=False) for images.")
      x = x[:, None]
    if x.ndim != 5:
      raise ValueError(f"Expected input [b, t, h, w, c] or [b, h, w, c], got shape {x.shape}")
    b, t, hgt, wid, c_in = x.shape
    expected = cfg.in_channels + cfg.cond_channels
    if c_in != expected:
      raise ValueError(f"Input has {c_in} channels but model.in_channels + model.cond_channels "
                       f"= {cfg.in_channels} + {cfg.cond_channels} = {expected}.")
    if noise_cond.shape != (b,):
      raise ValueError(f"noise_cond must have shape [b] = ({b},), got {noise_cond.shape}")
    if text.shape[0] != b or text_mask.shape != text.shape[:2]:
      raise ValueError(f"text {text.shape} and text_mask {text_mask.shape} must be [b, L, d] and "
                       f"[b, L] with b = {b}")
    cfg.check_input(t if self.temporal else None, hgt, wid)

    dtype = cfg.compute_dtype
    deterministic = not train
    x = _constrain(x.astype(dtype))
    text = text.astype(dtype)
    emb = layers.NoiseLevelEmbedding(
        cfg.channels, 4 * cfg.channels, cfg.noise_embed_flip_sin_to_cos,
        cfg.noise_embed_freq_shift, cfg.noise_embed_max_period, activation=cfg.activation,
        dtype=dtype, name="noise_embed")(noise_cond)  # b d
    if cfg.text_pooling == "attention":
      # IF's added conditioning: pooled raw text (before text_proj) joins the noise embedding.
      emb = emb + if_blocks.TextTimeEmbedding(4 * cfg.channels, cfg.text_pooling_heads,
                                              dtype=dtype, name="text_pool")(text)
    if cfg.embed_activation != "none":
      emb = layers.activation(cfg.embed_activation)(emb)
    if cfg.text_proj_dim:
      text = layers.dense(cfg.text_proj_dim, name="text_proj", dtype=dtype)(text)

    conv_in_init = zero_cond_channels_kernel_init(cfg.in_channels)
    h = layers.Conv2D(cfg.channels, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype,
                kernel_init=layers.partitioned(conv_in_init, layers.CONV_KERNEL_AXES),
                bias_init=layers.partitioned(nn.initializers.zeros_init(), ("conv_out",)),
                name="conv_in")(layers.constrain_leading(x))
    h = layers.constrain_leading(h)
    skips = [h]
    for level in range(cfg.num_levels):
      h, level_skips = DownLevel(cfg, deterministic, level=level, temporal=self.temporal,
                                 name=f"down_{level}")(h, emb, text, text_mask)
      skips.extend(level_skips)
    h = MidBlock(cfg, deterministic, temporal=self.temporal, name="mid")(h, emb, text, text_mask)
    for level in reversed(range(cfg.num_levels)):
      n = cfg.num_res_blocks[level] + 1
      level_skips, skips = skips[-n:], skips[:-n]
      h = UpLevel(cfg, deterministic, level=level, temporal=self.temporal,
                  name=f"up_{level}")(h, level_skips, emb, text, text_mask)
    h = layers.activation(cfg.activation)(
        layers.GroupNorm(cfg.norm_groups, cfg.norm_eps, dtype=dtype, name="norm_out")(h))
    out = layers.conv2d(cfg.out_channels, zero_init=cfg.zero_init_output, dtype=dtype,
                        name="conv_out")(h)
    out = out.astype(jnp.float32)
    return out[:, 0] if image_input else out
