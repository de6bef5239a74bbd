"""Small transformer text encoder trained jointly with the T2I stage (SPEC §3).

Stands in for Imagen's frozen T5 when no pre-trained encoder is used (the embedded dataset):
token embedding + learned absolute positions, pre-LayerNorm transformer layers whose
self-attention ignores padded keys, and a final LayerNorm. Outputs at padded positions are set
to zero, so the embedding of a caption does not depend on what fills its padding and the
U-Net's cross-attention (which also gets the mask) never sees stray values there.

Parameters carry logical axis names (``vocab``, ``embed``, ``heads``, ``mlp``, ``norm``) as in
the T5 port, so the same mesh rules shard both.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.parallel import sharding as sharding_lib

Array = jax.Array
_ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_embed")


def _dense(features: int, axes: tuple[str, str], name: str, dtype, param_dtype) -> nn.Dense:
  return nn.Dense(
      features, dtype=dtype, param_dtype=param_dtype, name=name,
      kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)))


def _layer_norm(name: str, dtype, param_dtype) -> nn.LayerNorm:
  return nn.LayerNorm(
      dtype=dtype, param_dtype=param_dtype, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)))


class SelfAttention(nn.Module):
  """Multi-head self-attention over tokens; padded tokens are masked out as keys."""

  heads: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array) -> Array:
    b, length, width = x.shape
    if width % self.heads:
      raise ValueError(f"text.width ({width}) must be divisible by text.heads ({self.heads})")
    head_dim = width // self.heads
    dense = lambda name: _dense(width, ("embed", "heads"), name, self.dtype, self.param_dtype)
    split = lambda y: y.reshape(b, length, self.heads, head_dim)  # b l h d
    q, k, v = (split(dense(name)(x)) for name in ("query", "key", "value"))
    attn_mask = mask[:, None, None, :]  # b 1 1 k: every query may look at every real key
    out = nn.dot_product_attention(q, k, v, mask=attn_mask, dtype=self.dtype)  # b l h d
    out = out.reshape(b, length, width)
    return _dense(width, ("heads", "embed"), "out", self.dtype, self.param_dtype)(out)


class EncoderLayer(nn.Module):
  """Pre-LN block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``."""

  heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool = True) -> Array:
    width = x.shape[-1]
    drop = nn.Dropout(self.dropout_rate)
    h = _layer_norm("attention_norm", self.dtype, self.param_dtype)(x)
    h = SelfAttention(self.heads, self.dtype, self.param_dtype, name="attention")(h, mask)
    x = x + drop(h, deterministic=deterministic)
    h = _layer_norm("mlp_norm", self.dtype, self.param_dtype)(x)
    h = _dense(self.mlp_dim, ("embed", "mlp"), "mlp_in", self.dtype, self.param_dtype)(h)
    h = nn.gelu(h)
    h = _dense(width, ("mlp", "embed"), "mlp_out", self.dtype, self.param_dtype)(h)
    x = x + drop(h, deterministic=deterministic)
    return sharding_lib.constrain(x, _ACTIVATION_AXES)


class TransformerTextEncoder(nn.Module):
  """``(ids int [b, L], mask bool [b, L]) -> embeddings [b, L, width]``, zero where padded."""

  vocab_size: int
  max_length: int
  width: int
  depth: int
  heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids: Array, mask: Array, deterministic: bool = True) -> Array:
    if ids.ndim != 2 or mask.shape != ids.shape:
      raise ValueError(f"TransformerTextEncoder expects ids [b, L] and a mask of the same "
                       f"shape, got ids {ids.shape} and mask {mask.shape}")
    if ids.shape[1] > self.max_length:
      raise ValueError(f"sequence length {ids.shape[1]} exceeds text.max_length "
                       f"{self.max_length} (the size of the learned position table)")
    mask = mask.astype(bool)
    embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="token_embedding",
                     embedding_init=nn.with_logical_partitioning(
                         nn.initializers.normal(0.02), ("vocab", "embed")))
    positions = self.param(
        "position_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
        (self.max_length, self.width), self.param_dtype)
    x = embed(ids) + jnp.asarray(positions[:ids.shape[1]], self.dtype)  # b l d
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    for i in range(self.depth):
      x = EncoderLayer(self.heads, self.mlp_dim, self.dropout_rate, self.dtype,
                       self.param_dtype, name=f"layers_{i}")(x, mask, deterministic)
    x = _layer_norm("final_norm", self.dtype, self.param_dtype)(x)
    return jnp.where(mask[..., None], x, jnp.zeros_like(x))
