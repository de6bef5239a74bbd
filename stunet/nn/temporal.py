"""The temporal layers that inflate a T2I U-Net into a Space-Time U-Net (SPEC §2).

All of them are inserted into a pre-trained T2I U-Net, so each is built to leave it unchanged
at initialisation:

- `TemporalConvBlock`: residual 1-D convolutions over frames; the last projection is
  zero-initialised, so the block is exactly the identity at init.
- `TemporalAttentionBlock`: attention over the frame axis at each spatial position, plus an
  MLP; both output projections are zero-initialised.
- `TemporalDownsample` / `TemporalUpsample`: a 1-D convolution initialised to the identity
  (centre tap = I) with a stride, or after frame duplication. At init they are exact
  nearest-neighbour resampling in time, which the paper found better than He init. A stride
  f reads every input frame only when the kernel spans 2f - 1 frames (SPEC §2), which
  `UNetConfig.temporal_resample_kernel_for` guarantees. `init_scheme="linear"` (beyond the
  paper, `model.temporal_resample_init`) starts them as a triangle filter of half-width f
  (down) and linear interpolation (up) over edge-replicated frames instead: every frame's
  features reach the coarse levels, and a static clip still passes exactly.

Beyond the paper (SPEC §2, `model.temporal_text`): the temporal layers can also see the
caption and the noise level, through a FiLM (scale/shift) of the conv block from the noise
embedding and the pooled caption (`film`), and a cross-attention to the caption inside the
attention block (`cross_attention`). Both output projections are zero-initialised, so each
option is still exactly the identity at init and inflation stays exact.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stunet.nn import layers
from stunet.nn.attention import Attention
from stunet.nn.config import TEMPORAL_RESAMPLE_INITS

Dtype = Any


def identity_temporal_kernel_init(key, shape, dtype=jnp.float32):
  """Centre tap = identity, other taps 0: the conv copies frames (SPEC §2, 'identity init')."""
  del key
  k, c_in, c_out = shape
  if c_in != c_out:
    raise ValueError(f"An identity temporal kernel needs c_in == c_out, got {c_in} -> {c_out}")
  return jnp.zeros(shape, dtype).at[k // 2].set(jnp.eye(c_in, dtype=dtype))


def linear_temporal_kernel_init(factor: int):
  """Triangle taps ``max(f - |i - centre|, 0)``, normalised to sum 1, on the channel identity.

  With stride f it is the anti-aliasing filter of linear down-sampling (f=2: 1/4, 1/2, 1/4);
  after f-fold frame duplication it interpolates linearly between the coarse frames. Taps
  summing to 1 keep a constant (static) clip unchanged given edge padding.
  """

  def init(key, shape, dtype=jnp.float32):
    del key
    k, c_in, c_out = shape
    if c_in != c_out:
      raise ValueError(f"A linear temporal kernel needs c_in == c_out, got {c_in} -> {c_out}")
    taps = np.maximum(factor - np.abs(np.arange(k) - k // 2), 0).astype(np.float64)
    taps /= taps.sum()
    return jnp.asarray(taps[:, None, None] * np.eye(c_in)[None], dtype)

  return init


TEMPORAL_CONV_IMPLS = ("matmul", "conv")
TEMPORAL_PADDINGS = ("zeros", "edge")


class TemporalConv(nn.Module):
  """A 1-D convolution over the frame axis of `b t h w c`, 'same' padding, optional stride.

  `padding="zeros"` pads the clip's ends with zero frames; `"edge"` repeats the first and last
  frames (what a smoothing kernel needs to leave the end frames at full strength).

  `implementation="conv"` runs one (k, 1, 1) 3-D convolution; `"matmul"` computes the same
  thing as `kernel_size` channel matmuls of frame-shifted inputs, summed. Both take the same
  `(k, c_in, c_out)` kernel and agree to float rounding. On XLA:CPU the matmul form stepped
  1.0-1.4x faster in an interleaved train-step A/B but used ~20% more activation memory
  (`benchmarks/results/train_step_temporal_conv_ab.md`), so the convolution stays the default.
  """

  features: int
  kernel_size: int = 3
  stride: int = 1
  kernel_init: Any = nn.initializers.lecun_normal()
  implementation: str = "conv"
  padding: str = "zeros"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t/stride h w c'
    if self.implementation not in TEMPORAL_CONV_IMPLS:
      raise ValueError(f"TemporalConv.implementation must be one of {TEMPORAL_CONV_IMPLS}, got "
                       f"{self.implementation!r}")
    if self.padding not in TEMPORAL_PADDINGS:
      raise ValueError(f"TemporalConv.padding must be one of {TEMPORAL_PADDINGS}, got "
                       f"{self.padding!r}")
    c_in = x.shape[-1]
    kernel = self.param("kernel", layers.partitioned(self.kernel_init, layers.TEMPORAL_KERNEL_AXES),
                        (self.kernel_size, c_in, self.features), self.param_dtype)
    bias = self.param("bias", layers.partitioned(nn.initializers.zeros_init(), ("conv_out",)),
                      (self.features,), self.param_dtype)
    pad = (self.kernel_size - 1) // 2
    # Batch (and frames) pinned on both sides, as in `layers.Conv2D`: the partitioner then
    # gathers the FSDP-sharded kernel, never the activation.
    x = layers.constrain_leading(x.astype(self.dtype))
    kernel = kernel.astype(self.dtype)
    if self.padding == "edge":
      x = jnp.pad(x, ((0, 0), (pad, pad)) + ((0, 0),) * (x.ndim - 2), mode="edge")
      pad = 0
    if self.implementation == "conv":
      # A (k, 1, 1) 3-D convolution runs directly on the b t h w c layout: no transposes.
      y = jax.lax.conv_general_dilated(
          x, kernel[:, None, None], window_strides=(self.stride, 1, 1),
          padding=((pad, pad), (0, 0), (0, 0)), dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    else:
      frames = x.shape[1]
      out_frames = (frames + 2 * pad - self.kernel_size) // self.stride + 1
      padded = jnp.pad(x, ((0, 0), (pad, pad)) + ((0, 0),) * (x.ndim - 2))
      span = (out_frames - 1) * self.stride + 1
      y = sum(jnp.einsum("bthwc,cd->bthwd", padded[:, tap:tap + span:self.stride], kernel[tap])
              for tap in range(self.kernel_size))
    return layers.constrain_leading(y + bias.astype(self.dtype))


def masked_mean(text, text_mask):  # b L d, b L -> b d
  """Mean of the real tokens' embeddings (the pooled caption); 0 for a caption with none."""
  weights = text_mask.astype(text.dtype)[..., None]  # b L 1
  return jnp.sum(text * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)


class TemporalConvBlock(nn.Module):
  """Residual factorised space-time conv: x + conv_t(SiLU(GN(conv_t(SiLU(GN(x)))))).

  With `film`, the second GroupNorm's output is scaled and shifted per example and channel,
  `GN(h) * (1 + scale) + shift`, with `(scale, shift)` a zero-initialised projection of
  `[SiLU(noise embedding), pooled caption]` (as the spatial res blocks use the noise level).
  """

  kernel_size: int = 3
  norm_groups: int = 32
  norm_eps: float = 1e-5
  dropout: float = 0.0
  deterministic: bool = True
  conv_implementation: str = "conv"
  film: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, emb=None, text=None, text_mask=None):
    # x: b t h w c; with film: emb b d (noise embedding), text b L d', text_mask b L
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    c = x.shape[-1]
    h = layers.GroupNorm(self.norm_groups, self.norm_eps, name="norm1", **kw)(x)
    h = TemporalConv(c, self.kernel_size, implementation=self.conv_implementation, name="conv1",
                     **kw)(nn.silu(h))
    h = layers.GroupNorm(self.norm_groups, self.norm_eps, name="norm2", **kw)(h)
    if self.film:
      if emb is None or text is None or text_mask is None:
        raise ValueError("TemporalConvBlock(film=True) needs emb, text and text_mask")
      cond = jnp.concatenate([nn.silu(emb), masked_mean(text, text_mask).astype(emb.dtype)],
                             axis=-1)  # b (d + d')
      # Zero-init: scale = shift = 0, so the block is the plain (text-blind) one at init.
      cond = layers.dense(2 * c, zero_init=True, name="film", **kw)(cond)
      scale, shift = jnp.split(cond[:, None, None, None, :], 2, axis=-1)  # b 1 1 1 c each
      h = h * (1 + scale) + shift
    h = nn.Dropout(self.dropout, deterministic=self.deterministic)(nn.silu(h))
    h = TemporalConv(c, self.kernel_size, kernel_init=layers.zeros_init(),
                     implementation=self.conv_implementation, name="conv2", **kw)(h)
    return x + h


def frame_position_encoding(num_frames: int, dim: int) -> jax.Array:
  """Sinusoidal encoding of frame indices `[t, dim]` (added before temporal attention)."""
  return layers.sinusoidal_embedding(jnp.arange(num_frames, dtype=jnp.float32), dim,
                                     flip_sin_to_cos=False)


class TemporalAttentionBlock(nn.Module):
  """Self-attention over frames at each spatial position, then an MLP; zero-init outputs.

  With `cross_attention`, a cross-attention to the caption tokens sits between the two (as in
  the spatial transformer blocks); its queries carry the frame position encoding too, so
  what a word asks for can differ from frame to frame (motion). Zero-init output projection.
  """

  num_heads: int
  position_encoding: str = "sinusoidal"
  ff_mult: int = 4
  dropout: float = 0.0
  deterministic: bool = True
  cross_attention: bool = False
  attention_impl: str = "auto"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, text=None, text_mask=None):
    # x: b t h w c; with cross_attention: text b L d', text_mask b L
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, t, hgt, wid, c = x.shape
    head_dim = c // self.num_heads
    positions = frame_position_encoding(t, c)[None]  # 1 t c
    tokens = jnp.moveaxis(x, 1, 3).reshape(b * hgt * wid, t, c)  # (b h w) t c
    h = layers.layer_norm(name="norm1", **kw)(tokens)
    if self.position_encoding == "sinusoidal":
      h = h + positions.astype(h.dtype)
    h = Attention(self.num_heads, head_dim, zero_init_out=True,
                  implementation=self.attention_impl, name="attn", **kw)(h)
    tokens = tokens + h
    if self.cross_attention:
      if text is None or text_mask is None:
        raise ValueError("TemporalAttentionBlock(cross_attention=True) needs text and text_mask")
      h = layers.layer_norm(name="norm_cross", **kw)(tokens)
      if self.position_encoding == "sinusoidal":
        h = h + positions.astype(h.dtype)
      # Every query attends to its own example's caption: all (h w t) queries of an example
      # share one attention call instead of repeating the caption per pixel column.
      h = h.reshape(b, hgt * wid * t, c)  # b (h w t) c
      h = Attention(self.num_heads, head_dim, zero_init_out=True,
                    implementation=self.attention_impl, name="cross_attn", **kw)(
                        h, text.astype(h.dtype), text_mask)
      tokens = tokens + h.reshape(b * hgt * wid, t, c)
    h = layers.layer_norm(name="norm2", **kw)(tokens)
    h = nn.gelu(layers.dense(c * self.ff_mult, name="ff_in", **kw)(h))
    h = nn.Dropout(self.dropout, deterministic=self.deterministic)(h)
    tokens = tokens + layers.dense(c, zero_init=True, axes=("mlp", "embed"), name="ff_out",
                                   **kw)(h)
    return jnp.moveaxis(tokens.reshape(b, hgt, wid, t, c), 3, 1)


def _resample_conv_options(init: str, factor: int) -> dict:
  """Kernel init and padding of a resampler: the paper's identity keeps zero padding (its
  trained checkpoints were made with it); the linear filter needs edge frames."""
  if init == "identity":
    return dict(kernel_init=identity_temporal_kernel_init, padding="zeros")
  if init == "linear":
    return dict(kernel_init=linear_temporal_kernel_init(factor), padding="edge")
  raise ValueError(f"temporal resampler init_scheme must be one of {TEMPORAL_RESAMPLE_INITS}, "
                   f"got {init!r}")


class TemporalDownsample(nn.Module):
  """Temporal conv with stride `factor`; at init frames 0, f, 2f, ...
  (`init_scheme="identity"`, the paper) or a triangle-filtered (linear) down-sampling
  (`"linear"`)."""

  factor: int
  kernel_size: int = 3
  conv_implementation: str = "conv"
  init_scheme: str = "identity"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t/f h w c
    return TemporalConv(x.shape[-1], self.kernel_size, stride=self.factor,
                        implementation=self.conv_implementation, name="conv",
                        dtype=self.dtype, param_dtype=self.param_dtype,
                        **_resample_conv_options(self.init_scheme, self.factor))(x)


class TemporalUpsample(nn.Module):
  """Frame duplication then a temporal conv; at init each frame f times
  (`init_scheme="identity"`, the paper) or linear interpolation between frames (`"linear"`)."""

  factor: int
  kernel_size: int = 3
  conv_implementation: str = "conv"
  init_scheme: str = "identity"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t*f h w c
    x = jnp.repeat(x, self.factor, axis=1)
    return TemporalConv(x.shape[-1], self.kernel_size,
                        implementation=self.conv_implementation, name="conv",
                        dtype=self.dtype, param_dtype=self.param_dtype,
                        **_resample_conv_options(self.init_scheme, self.factor))(x)
