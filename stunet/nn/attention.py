"""Multi-head attention used by the spatial transformer and the temporal attention (SPEC §2).

Parameter layout follows diffusers' `Attention` (`to_q`, `to_k`, `to_v` without bias,
`to_out` with bias) so public checkpoints map onto it tensor for tensor. The kernel itself is
`jax.nn.dot_product_attention`, which lowers to a fused implementation where the backend has
one (cuDNN on GPU) and to plain XLA elsewhere.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import layers

Dtype = Any


class Attention(nn.Module):
  """`x [B, n, d]` attends to `context [B, s, dc]` (itself when None), key mask `[B, s]`."""

  num_heads: int
  head_dim: int
  out_features: int | None = None
  zero_init_out: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, mask=None):
    context = x if context is None else context
    inner = self.num_heads * self.head_dim
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    qkv_axes = ("embed", "heads")
    q = layers.dense(inner, use_bias=False, axes=qkv_axes, name="to_q", **kw)(x)
    k = layers.dense(inner, use_bias=False, axes=qkv_axes, name="to_k", **kw)(context)
    v = layers.dense(inner, use_bias=False, axes=qkv_axes, name="to_v", **kw)(context)
    split = lambda a: a.reshape(a.shape[:-1] + (self.num_heads, self.head_dim))
    q, k, v = split(q), split(k), split(v)  # B n heads dh
    if mask is not None:
      mask = mask.astype(jnp.bool_)[:, None, None, :]  # B 1 1 s: broadcast over heads, queries
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    out = out.reshape(out.shape[:-2] + (inner,))
    return layers.dense(self.out_features or x.shape[-1], zero_init=self.zero_init_out,
                        axes=("heads", "embed"), name="to_out", **kw)(out)
