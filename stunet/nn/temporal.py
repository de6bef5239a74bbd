"""The temporal layers that inflate a T2I U-Net into a Space-Time U-Net (SPEC §2).

All of them are inserted into a pre-trained T2I U-Net, so each is built to leave it unchanged
at initialisation:

- `TemporalConvBlock`: residual 1-D convolutions over frames; the last projection is
  zero-initialised, so the block is exactly the identity at init.
- `TemporalAttentionBlock`: attention over the frame axis at each spatial position, plus an
  MLP; both output projections are zero-initialised.
- `TemporalDownsample` / `TemporalUpsample`: a 1-D convolution initialised to the identity
  (centre tap = I) with a stride, or after frame duplication. At init they are exact
  nearest-neighbour resampling in time, which the paper found better than He init.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import layers
from stunet.nn.attention import Attention

Dtype = Any


def identity_temporal_kernel_init(key, shape, dtype=jnp.float32):
  """Centre tap = identity, other taps 0: the conv copies frames (SPEC §2, 'identity init')."""
  del key
  k, c_in, c_out = shape
  if c_in != c_out:
    raise ValueError(f"An identity temporal kernel needs c_in == c_out, got {c_in} -> {c_out}")
  return jnp.zeros(shape, dtype).at[k // 2].set(jnp.eye(c_in, dtype=dtype))


TEMPORAL_CONV_IMPLS = ("matmul", "conv")


class TemporalConv(nn.Module):
  """A 1-D convolution over the frame axis of `b t h w c`, 'same' padding, optional stride.

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
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t/stride h w c'
    if self.implementation not in TEMPORAL_CONV_IMPLS:
      raise ValueError(f"TemporalConv.implementation must be one of {TEMPORAL_CONV_IMPLS}, got "
                       f"{self.implementation!r}")
    c_in = x.shape[-1]
    kernel = self.param("kernel", layers.partitioned(self.kernel_init, layers.TEMPORAL_KERNEL_AXES),
                        (self.kernel_size, c_in, self.features), self.param_dtype)
    bias = self.param("bias", layers.partitioned(nn.initializers.zeros_init(), ("conv_out",)),
                      (self.features,), self.param_dtype)
    pad = (self.kernel_size - 1) // 2
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
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
    return y + bias.astype(self.dtype)


class TemporalConvBlock(nn.Module):
  """Residual factorised space-time conv: x + conv_t(SiLU(GN(conv_t(SiLU(GN(x))))))."""

  kernel_size: int = 3
  norm_groups: int = 32
  norm_eps: float = 1e-5
  dropout: float = 0.0
  deterministic: bool = True
  conv_implementation: str = "conv"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    c = x.shape[-1]
    h = layers.GroupNorm(self.norm_groups, self.norm_eps, name="norm1", **kw)(x)
    h = TemporalConv(c, self.kernel_size, implementation=self.conv_implementation, name="conv1",
                     **kw)(nn.silu(h))
    h = layers.GroupNorm(self.norm_groups, self.norm_eps, name="norm2", **kw)(h)
    h = nn.Dropout(self.dropout, deterministic=self.deterministic)(nn.silu(h))
    h = TemporalConv(c, self.kernel_size, kernel_init=layers.zeros_init(),
                     implementation=self.conv_implementation, name="conv2", **kw)(h)
    return x + h


def frame_position_encoding(num_frames: int, dim: int) -> jax.Array:
  """Sinusoidal encoding of frame indices `[t, dim]` (added before temporal attention)."""
  return layers.sinusoidal_embedding(jnp.arange(num_frames, dtype=jnp.float32), dim,
                                     flip_sin_to_cos=False)


class TemporalAttentionBlock(nn.Module):
  """Self-attention over frames at each spatial position, then an MLP; zero-init outputs."""

  num_heads: int
  position_encoding: str = "sinusoidal"
  ff_mult: int = 4
  dropout: float = 0.0
  deterministic: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, t, hgt, wid, c = x.shape
    tokens = jnp.moveaxis(x, 1, 3).reshape(b * hgt * wid, t, c)  # (b h w) t c
    h = layers.layer_norm(name="norm1", **kw)(tokens)
    if self.position_encoding == "sinusoidal":
      h = h + frame_position_encoding(t, c).astype(h.dtype)[None]
    h = Attention(self.num_heads, c // self.num_heads, zero_init_out=True, name="attn", **kw)(h)
    tokens = tokens + h
    h = layers.layer_norm(name="norm2", **kw)(tokens)
    h = nn.gelu(layers.dense(c * self.ff_mult, name="ff_in", **kw)(h))
    h = nn.Dropout(self.dropout, deterministic=self.deterministic)(h)
    tokens = tokens + layers.dense(c, zero_init=True, axes=("mlp", "embed"), name="ff_out",
                                   **kw)(h)
    return jnp.moveaxis(tokens.reshape(b, hgt, wid, t, c), 3, 1)


class TemporalDownsample(nn.Module):
  """Identity-initialised temporal conv with stride `factor`: frames 0, f, 2f, ... at init."""

  factor: int
  kernel_size: int = 3
  conv_implementation: str = "conv"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t/f h w c
    return TemporalConv(x.shape[-1], self.kernel_size, stride=self.factor,
                        kernel_init=identity_temporal_kernel_init,
                        implementation=self.conv_implementation, name="conv",
                        dtype=self.dtype, param_dtype=self.param_dtype)(x)


class TemporalUpsample(nn.Module):
  """Frame duplication then an identity-initialised temporal conv: each frame f times at init."""

  factor: int
  kernel_size: int = 3
  conv_implementation: str = "conv"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b t h w c -> b t*f h w c
    x = jnp.repeat(x, self.factor, axis=1)
    return TemporalConv(x.shape[-1], self.kernel_size, kernel_init=identity_temporal_kernel_init,
                        implementation=self.conv_implementation, name="conv",
                        dtype=self.dtype, param_dtype=self.param_dtype)(x)
