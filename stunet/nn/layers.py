"""Basic layers shared by the spatial and temporal blocks (SPEC §2).

Every parameter carries logical axis names so the training loop can shard it with mesh rules
from the config. Layers accept any number of leading batch dims, so a video `b t h w c` goes
through a spatial conv or norm frame by frame without an explicit fold.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.parallel import sharding as sharding_lib

Dtype = Any

# Logical axis names of parameters; the mesh rules in `config.mesh.rules` map them to mesh axes.
CONV_KERNEL_AXES = (None, None, "conv_in", "conv_out")
TEMPORAL_KERNEL_AXES = (None, "conv_in", "conv_out")
DENSE_AXES = ("embed", "mlp")
NORM_AXES = ("norm",)
# Logical names of an activation's leading dims that the weight-carrying layers pin (see
# `sharding.constrain_leading`): the batch, and for a video `b t h w c` also the frames.
VIDEO_LEADING_AXES = ("activation_batch", "activation_frames")
BATCH_LEADING_AXES = ("activation_batch",)


def constrain_leading(x):
  """Pins an activation's batch (and a video's frames) dim to the mesh, the rest left free."""
  return sharding_lib.constrain_leading(x, VIDEO_LEADING_AXES if x.ndim == 5 else
                                        BATCH_LEADING_AXES)


def frames_sharded(x) -> bool:
  """Whether the frames dim of a video activation `b t ...` is split over a mesh axis (the
  `context` axis of frame parallelism). Such activations are never reshaped to `(b t) ...`:
  the partitioner would gather the frames to fold them into the batch."""
  return x.ndim >= 4 and sharding_lib.dim_is_sharded(x.shape, VIDEO_LEADING_AXES, 1)


def zeros_init():
  """Zero init for residual output projections: a new block starts as the identity (SPEC §2)."""
  return nn.initializers.zeros_init()


def default_kernel_init():
  return nn.initializers.lecun_normal()


# Nonlinearities by config name. "gelu" is the exact (erf) GELU, as torch's nn.GELU() that
# imported checkpoints (DeepFloyd IF) were trained with.
ACTIVATIONS = {
    "silu": nn.silu,
    "gelu": lambda x: nn.gelu(x, approximate=False),
}


def activation(name: str):
  """The nonlinearity called `name` (a key of `ACTIVATIONS`)."""
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; supported: {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


def partitioned(init_fn, axes: Sequence[str | None]):
  return nn.with_logical_partitioning(init_fn, tuple(axes))


SPATIAL_CONV_IMPLS = ("auto", "conv")


def _pair(value) -> tuple[int, int]:
  """nn.Conv's int-or-sequence (None = 1) window arguments as a pair."""
  if value is None:
    return (1, 1)
  return (value, value) if isinstance(value, int) else tuple(value)


class Conv2D(nn.Conv):
  """`nn.Conv` (same parameters, same result) that avoids XLA's operand swap on small frames.

  When a frame is smaller than the kernel (a 2x2 frame under a 3x3 kernel: the coarsest level
  of a 5-level U-Net run at 32x32), XLA's algebraic simplifier swaps the convolution's
  operands, and XLA:CPU runs the resulting convolution as a naive loop: at 2x2x512 a 3x3 conv
  took ~70 ms for 19 MFLOPs (`benchmarks/results/train_step_small_frame_conv.md`). With
  `implementation="auto"` such frames are convolved as one matmul of the stacked shifted
  windows with the reshaped kernel (im2col; the same sum, in a different order, so equal to
  float rounding); frames at least as large as the kernel take `nn.Conv`'s own path
  unchanged. `"conv"` always takes `nn.Conv`'s path.
  """

  implementation: str = "auto"

  @nn.compact
  def __call__(self, inputs):
    if self.implementation not in SPATIAL_CONV_IMPLS:
      raise ValueError(f"Conv2D.implementation must be one of {SPATIAL_CONV_IMPLS}, got "
                       f"{self.implementation!r}")
    kh, kw = self.kernel_size
    height, width = inputs.shape[-3], inputs.shape[-2]
    plain = (self.implementation == "conv" or (height >= kh and width >= kw)
             or isinstance(self.padding, str) or self.feature_group_count != 1
             or _pair(self.kernel_dilation) != (1, 1) or _pair(self.input_dilation) != (1, 1))
    inputs = constrain_leading(inputs)
    if plain and inputs.ndim == 5 and frames_sharded(inputs):
      out = self._frame_conv(inputs)
    else:
      out = super().__call__(inputs) if plain else self._patches_matmul(inputs)
    return constrain_leading(out)

  def _params(self, c_in: int):
    """The kernel and bias exactly as `nn.Conv` declares them, promoted to `dtype`."""
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, c_in // self.feature_group_count, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    return kernel, bias

  def _frame_conv(self, inputs):
    """`b t h w c` convolved as a 3-D convolution whose kernel spans one frame.

    `nn.Conv` folds the frames into the batch with a reshape, which a context-sharded frames
    dim cannot pass without an all-gather; a 1 x kh x kw window keeps the frames a dim of
    their own, so each device convolves its own frames. Same parameters, same sums.
    """
    kernel, bias = self._params(inputs.shape[-1])
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(
        inputs, kernel[None], window_strides=(1,) + _pair(self.strides),
        padding=((0, 0),) + tuple(tuple(p) for p in self.padding),
        lhs_dilation=(1,) + _pair(self.input_dilation),
        rhs_dilation=(1,) + _pair(self.kernel_dilation),
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        feature_group_count=self.feature_group_count, precision=self.precision)
    return y if bias is None else y + bias

  def _patches_matmul(self, inputs):
    kh, kw = self.kernel_size
    c_in = inputs.shape[-1]
    kernel, bias = self._params(c_in)
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    (ph0, ph1), (pw0, pw1) = self.padding
    sh, sw = _pair(self.strides)
    lead = inputs.ndim - 3
    padded = jnp.pad(inputs, ((0, 0),) * lead + ((ph0, ph1), (pw0, pw1), (0, 0)))
    out_h = (inputs.shape[-3] + ph0 + ph1 - kh) // sh + 1
    out_w = (inputs.shape[-2] + pw0 + pw1 - kw) // sw + 1
    # Windows in kernel order (row i, column j, then channels): matches kernel.reshape below.
    windows = [padded[..., i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw, :]
               for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(windows, axis=-1)  # ... oh ow (kh kw c_in)
    y = jax.lax.dot_general(patches, kernel.reshape(kh * kw * c_in, self.features),
                            (((patches.ndim - 1,), (0,)), ((), ())), precision=self.precision)
    return y if bias is None else y + bias


def conv2d(features: int, *, kernel_size: int = 3, stride: int = 1, zero_init: bool = False,
           implementation: str = "auto", name: str | None = None, dtype: Dtype = jnp.float32,
           param_dtype: Dtype = jnp.float32) -> Conv2D:
  """A k x k spatial convolution on `... h w c` with torch-style symmetric padding.

  `implementation`: see `Conv2D` ("auto" = im2col matmul on frames smaller than the kernel).
  """
  pad = (kernel_size - 1) // 2
  kernel_init = zeros_init() if zero_init else default_kernel_init()
  return Conv2D(
      features, (kernel_size, kernel_size), strides=(stride, stride),
      padding=((pad, pad), (pad, pad)), dtype=dtype, param_dtype=param_dtype,
      kernel_init=partitioned(kernel_init, CONV_KERNEL_AXES),
      bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
      implementation=implementation, name=name)


class Dense(nn.Dense):
  """`nn.Dense` (same parameters, same result) with its input's and output's batch dim pinned."""

  @nn.compact
  def __call__(self, inputs):
    return constrain_leading(super().__call__(constrain_leading(inputs)))


def dense(features: int, *, use_bias: bool = True, zero_init: bool = False,
          axes: tuple[str | None, str | None] = DENSE_AXES, name: str | None = None,
          dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32) -> Dense:
  """A dense layer whose kernel and bias carry logical axis names."""
  kernel_init = zeros_init() if zero_init else default_kernel_init()
  return Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
      kernel_init=partitioned(kernel_init, axes),
      bias_init=partitioned(nn.initializers.zeros_init(), (axes[1],)), name=name)


class GroupNorm(nn.Module):
  """GroupNorm over `h w c` of each image (each frame of a video), computed in float32.

  Reducing over the last three dims only makes a video `b t h w c` normalise frame by frame,
  exactly as a T2I U-Net normalises each image: the inflated model at init then matches the
  T2I model applied per frame.
  """

  num_groups: int = 32
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    if c % self.num_groups:
      raise ValueError(
          f"GroupNorm: {c} channels are not divisible by model.norm_groups={self.num_groups}.")
    scale = self.param("scale", partitioned(nn.initializers.ones_init(), NORM_AXES), (c,),
                       self.param_dtype)
    bias = self.param("bias", partitioned(nn.initializers.zeros_init(), NORM_AXES), (c,),
                      self.param_dtype)
    # The activation keeps its `... h w c` layout throughout: only the per-frame statistics
    # (`... c`, then `... groups`) are regrouped. Reshaping the activation itself to
    # `... h w groups c/groups` would put c/groups (8 at 256 channels and 32 groups) in the
    # minor dimension, which TPU tiles pad to 128 lanes.
    x32 = x.astype(jnp.float32)
    groups, size = self.num_groups, c // self.num_groups
    count = x.shape[-3] * x.shape[-2] * size

    def group_mean(v):  # ... h w c -> ... 1 1 c, each channel holding its group's mean
      per_channel = jnp.sum(v, axis=(-3, -2))  # ... c
      per_group = jnp.sum(per_channel.reshape(per_channel.shape[:-1] + (groups, size)), -1)
      return jnp.repeat(per_group / count, size, axis=-1)[..., None, None, :]

    mean = group_mean(x32)
    centred = x32 - mean
    var = group_mean(jnp.square(centred))
    normed = centred * jax.lax.rsqrt(var + self.epsilon)
    return (normed * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(self.dtype)


def layer_norm(*, epsilon: float = 1e-5, name: str | None = None, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32) -> nn.LayerNorm:
  """LayerNorm over channels (Flax reduces in float32) with logically named parameters."""
  return nn.LayerNorm(
      epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
      scale_init=partitioned(nn.initializers.ones_init(), NORM_AXES),
      bias_init=partitioned(nn.initializers.zeros_init(), NORM_AXES), name=name)


def sinusoidal_embedding(x: jax.Array, dim: int, *, max_period: float = 10000.0,
                         flip_sin_to_cos: bool = True, freq_shift: float = 0.0) -> jax.Array:
  """Fourier features of a continuous scalar per example: `[b] -> [b, dim]`.

  The frequency layout follows diffusers' `get_timestep_embedding` so converted checkpoints
  see the same features they were trained with.
  """
  if dim % 2:
    raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
  half = dim // 2
  exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
  angles = x.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  return jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)


class NoiseLevelEmbedding(nn.Module):
  """Continuous noise level -> Fourier features -> 2-layer MLP (diffusers' TimestepEmbedding)."""

  features_dim: int
  embed_dim: int
  flip_sin_to_cos: bool = True
  freq_shift: float = 0.0
  max_period: float = 10000.0
  activation: str = "silu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, noise_cond):  # b
    feats = sinusoidal_embedding(noise_cond, self.features_dim, max_period=self.max_period,
                                 flip_sin_to_cos=self.flip_sin_to_cos,
                                 freq_shift=self.freq_shift).astype(self.dtype)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = dense(self.embed_dim, name="linear_1", **kw)(feats)
    h = activation(self.activation)(h)
    return dense(self.embed_dim, name="linear_2", **kw)(h)  # b d
