"""The pre-trained text-to-image U-Net's spatial blocks (SPEC §2), on videos `b t h w c`.

Each block treats frames independently: convolutions and GroupNorm act per frame, spatial
self-attention attends within a frame, and the per-example conditioning (noise embedding
`[b, d]`, text `[b, L, dc]`) is broadcast over however many frames the video has at this
temporal resolution. Broadcasting, rather than repeating conditioning per frame, is what keeps
conditioning attached to the right example after temporal down/up-sampling (SPEC §2).

Layouts mirror diffusers' ResnetBlock2D, Transformer2DModel/BasicTransformerBlock (GEGLU
feed-forward) and Downsample2D/Upsample2D so public checkpoints map onto them exactly.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import layers
from stunet.nn.attention import Attention

Dtype = Any


def _avg_pool_2x2(x):  # ... h w c -> ... h/2 w/2 c
  *lead, hgt, wid, c = x.shape
  return x.reshape(*lead, hgt // 2, 2, wid // 2, 2, c).mean(axis=(-4, -2))


def _nearest_2x(x):  # ... h w c -> ... 2h 2w c
  return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class ResBlock(nn.Module):
  """GroupNorm-SiLU-conv residual block with the noise embedding as bias or scale/shift.

  `resample="down"`/`"up"` gives diffusers' ResnetBlock2D(down=True / up=True), the
  parameter-free 2x2 average pool / nearest 2x inside the block that DeepFloyd IF uses instead
  of strided / upsampling convolutions; `skip_time_act` feeds the embedding to `time_emb_proj`
  without the nonlinearity (IF's `resnet_skip_time_act`).
  """

  features: int
  norm_groups: int = 32
  norm_eps: float = 1e-5
  time_scale_shift: bool = True
  dropout: float = 0.0
  deterministic: bool = True
  activation: str = "silu"
  skip_time_act: bool = False
  resample: str = "none"  # "none" | "down" | "up"
  conv_impl: str = "auto"  # layers.Conv2D.implementation of the 3x3 convs
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, emb):  # x: b t h w c, emb: b d
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    act = layers.activation(self.activation)
    norm = lambda name: layers.GroupNorm(self.norm_groups, self.norm_eps, name=name, **kw)
    h = act(norm("norm1")(x))
    if self.resample != "none":
      if self.resample not in ("down", "up"):
        raise ValueError(f"ResBlock.resample must be 'none', 'down' or 'up', got {self.resample!r}")
      resample = _avg_pool_2x2 if self.resample == "down" else _nearest_2x
      x, h = resample(x), resample(h)
    h = layers.conv2d(self.features, implementation=self.conv_impl, name="conv1", **kw)(h)
    cond = layers.dense(self.features * (2 if self.time_scale_shift else 1), name="time_emb_proj",
                        **kw)(emb if self.skip_time_act else act(emb))
    cond = cond[:, None, None, None, :]  # b 1 1 1 c: the same for every frame of the example
    if self.time_scale_shift:
      scale, shift = jnp.split(cond, 2, axis=-1)
      h = norm("norm2")(h) * (1 + scale) + shift
    else:
      h = norm("norm2")(h + cond)
    h = nn.Dropout(self.dropout, deterministic=self.deterministic)(act(h))
    # Zero-init: a freshly initialised residual block is the identity, which keeps a deep
    # U-Net's activations at unit scale at the start of training.
    h = layers.conv2d(self.features, zero_init=True, implementation=self.conv_impl,
                      name="conv2", **kw)(h)
    if x.shape[-1] != self.features:
      x = layers.conv2d(self.features, kernel_size=1, name="conv_shortcut", **kw)(x)
    return x + h


class GEGLUProjection(nn.Module):
  """The GEGLU input projection: one `(d, 2 * inner)` kernel (diffusers' layout, value columns
  then gate columns) applied as two matmuls, returning `(value, gate)`.

  Under a tensor axis the kernel's columns are split over devices, so the first half of the
  devices would hold the value columns and the rest the gate columns; splitting one matmul's
  output then moves activations between devices. Slicing the kernel instead moves only the
  (small) weights, and every device computes matching value and gate columns.
  """

  inner: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", layers.partitioned(layers.default_kernel_init(),
                                                     layers.DENSE_AXES),
                        (x.shape[-1], 2 * self.inner), self.param_dtype)
    bias = self.param("bias", layers.partitioned(nn.initializers.zeros_init(), ("mlp",)),
                      (2 * self.inner,), self.param_dtype)
    x = layers.constrain_leading(x.astype(self.dtype))
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    halves = []
    for part in (slice(0, self.inner), slice(self.inner, 2 * self.inner)):
      y = jnp.einsum("...d,df->...f", x, kernel[:, part]) + bias[part]
      halves.append(layers.constrain_leading(y))
    return tuple(halves)


class FeedForward(nn.Module):
  """GEGLU feed-forward (Shazeer 2020), as in SD's BasicTransformerBlock."""

  mult: int = 4
  dropout: float = 0.0
  deterministic: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    d = x.shape[-1]
    inner = d * self.mult
    value, gate = GEGLUProjection(inner, name="geglu", **kw)(x)
    h = value * jax.nn.gelu(gate, approximate=False)
    h = nn.Dropout(self.dropout, deterministic=self.deterministic)(h)
    return layers.dense(d, axes=("mlp", "embed"), name="proj_out", **kw)(h)


class TransformerBlock(nn.Module):
  """Self-attention within a frame, cross-attention to text, GEGLU MLP; pre-LN residuals."""

  num_heads: int
  head_dim: int
  cross_attention: bool = True
  ff_mult: int = 4
  dropout: float = 0.0
  deterministic: bool = True
  attention_impl: str = "auto"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, text, text_mask):  # x: b t n d, text: b L dc, text_mask: b L
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, t, n, d = x.shape
    attn = lambda name: Attention(self.num_heads, self.head_dim,
                                  implementation=self.attention_impl, name=name, **kw)

    h = layers.layer_norm(name="norm1", **kw)(x)
    if layers.frames_sharded(x):  # frames are independent: attention per frame, in place
      x = x + attn("attn1")(h)
    else:  # frames folded into the batch
      x = x + attn("attn1")(h.reshape(b * t, n, d)).reshape(b, t, n, d)
    if self.cross_attention:
      # Text is per example: fold frames into the query sequence, not the batch, so every frame
      # of an example attends to that example's caption without copying it per frame.
      h = layers.layer_norm(name="norm2", **kw)(x).reshape(b, t * n, d)
      x = x + attn("attn2")(h, text, text_mask).reshape(b, t, n, d)
    ff = FeedForward(self.ff_mult, self.dropout, self.deterministic, name="ff", **kw)
    return x + ff(layers.layer_norm(name="norm3", **kw)(x))


class SpatialTransformer(nn.Module):
  """diffusers' Transformer2DModel: GroupNorm, projection in, transformer blocks, out, residual."""

  num_heads: int
  head_dim: int
  depth: int = 1
  cross_attention: bool = True
  projection: str = "conv"  # "linear" = diffusers use_linear_projection
  ff_mult: int = 4
  norm_groups: int = 32
  norm_eps: float = 1e-6
  dropout: float = 0.0
  deterministic: bool = True
  attention_impl: str = "auto"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, text, text_mask):  # x: b t h w c
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, t, hgt, wid, c = x.shape
    inner = self.num_heads * self.head_dim
    h = layers.GroupNorm(self.norm_groups, self.norm_eps, name="norm", **kw)(x)
    if self.projection == "conv":
      h = layers.conv2d(inner, kernel_size=1, name="proj_in", **kw)(h)
      h = h.reshape(b, t, hgt * wid, inner)
    else:
      h = layers.dense(inner, name="proj_in", **kw)(h.reshape(b, t, hgt * wid, c))
    for i in range(self.depth):
      h = TransformerBlock(self.num_heads, self.head_dim, self.cross_attention, self.ff_mult,
                           self.dropout, self.deterministic, self.attention_impl,
                           name=f"block_{i}", **kw)(
                               h, text, text_mask)
    if self.projection == "conv":
      h = layers.conv2d(c, kernel_size=1, name="proj_out", **kw)(h.reshape(b, t, hgt, wid, inner))
    else:
      h = layers.dense(c, axes=("mlp", "embed"), name="proj_out", **kw)(h)
      h = h.reshape(b, t, hgt, wid, c)
    return x + h


class Downsample(nn.Module):
  """Stride-2 3x3 convolution (diffusers Downsample2D, padding 1)."""

  features: int
  conv_impl: str = "auto"  # layers.Conv2D.implementation
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t h/2 w/2 c
    return layers.conv2d(self.features, stride=2, implementation=self.conv_impl, name="conv",
                         dtype=self.dtype, param_dtype=self.param_dtype)(x)


class Upsample(nn.Module):
  """Nearest-neighbour 2x then a 3x3 convolution (diffusers Upsample2D)."""

  features: int
  conv_impl: str = "auto"  # layers.Conv2D.implementation
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t 2h 2w c
    x = _nearest_2x(x)
    return layers.conv2d(self.features, implementation=self.conv_impl, name="conv",
                         dtype=self.dtype, param_dtype=self.param_dtype)(x)
