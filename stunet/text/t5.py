"""T5 encoder in Flax Linen: the frozen text encoder of Imagen-style models (SPEC §3).

A port of the encoder stack of T5 (Raffel et al., 2020) as implemented by HF transformers'
``T5EncoderModel``, so that public checkpoints (T5 v1.0, T5 v1.1 / Flan-T5, the T5-XXL encoder
used by DeepFloyd IF) load parameter for parameter (see ``stunet.convert.t5``):

- token embedding without scaling and without absolute positions;
- pre-norm blocks with T5's RMSNorm (no mean subtraction, no bias, variance in float32);
- self-attention whose scores are *not* divided by sqrt(d_kv) (T5 folds that into the
  initialisation), plus a learned bucketed relative position bias that the first layer computes
  and every later layer reuses;
- a ReLU feed-forward (v1.0: ``wi``, ``wo``) or a gated one (v1.1: ``wi_0``, ``wi_1``, ``wo``
  with the tanh-approximated GELU);
- a final RMSNorm. Dropout is active only when ``deterministic=False``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stunet.parallel import sharding as sharding_lib

Array = jax.Array

# Activations as HF's ACT2FN names them; "gelu_new" is the tanh approximation used by v1.1.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "silu": nn.silu,
    "swish": nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture of a T5 encoder stack (field names follow HF's ``T5Config``)."""

  vocab_size: int
  d_model: int
  d_kv: int
  d_ff: int
  num_layers: int
  num_heads: int
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dropout_rate: float = 0.1
  dense_act_fn: str = "relu"
  is_gated_act: bool = False

  def __post_init__(self):
    for field in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                  "relative_attention_num_buckets", "relative_attention_max_distance"):
      value = getattr(self, field)
      if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"T5Config.{field} must be a positive integer, got {value!r}.")
    if self.dense_act_fn not in ACTIVATIONS:
      raise ValueError(f"T5Config.dense_act_fn={self.dense_act_fn!r} is not supported; "
                       f"choose one of {sorted(ACTIVATIONS)}.")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate!r}.")

  @property
  def inner_dim(self) -> int:
    return self.num_heads * self.d_kv


def relative_position_buckets(query_length: int, key_length: int, num_buckets: int,
                              max_distance: int) -> np.ndarray:
  """Bidirectional T5 bucket index for every (query, key) pair: int32 [q, k].

  Half the buckets hold keys after the query; within each half, distances below
  ``num_buckets // 4`` get their own bucket and larger ones share logarithmically wider
  buckets up to ``max_distance``. Shapes are static, so this runs in numpy at trace time; the
  float32 arithmetic mirrors the reference so bucket boundaries (distance 16, 32, ...) agree.
  """
  relative = (np.arange(key_length)[None, :] - np.arange(query_length)[:, None])  # q k
  num_buckets //= 2
  buckets = (relative > 0).astype(np.int64) * num_buckets
  distance = np.abs(relative)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # Maximum with 1 only avoids log(0) in entries that `is_small` selects away.
  scaled = (np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
            / np.float32(math.log(max_distance / max_exact))
            * np.float32(num_buckets - max_exact))
  if_large = np.minimum(max_exact + scaled.astype(np.int64), num_buckets - 1)
  buckets += np.where(is_small, distance, if_large)
  return buckets.astype(np.int32)


class T5LayerNorm(nn.Module):
  """RMSNorm: scale only, no mean subtraction, variance accumulated in float32."""

  epsilon: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    normed = (x32 * jax.lax.rsqrt(variance + self.epsilon)).astype(self.dtype)
    return normed * jnp.asarray(scale, self.dtype)


def _dense(features: int, axes: tuple[str, str], name: str, dtype, param_dtype,
           stddev: float) -> nn.Dense:
  return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=param_dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.normal(stddev), axes))


class T5SelfAttention(nn.Module):
  """Multi-head self-attention with additive relative position bias and unscaled scores."""

  config: T5Config
  has_relative_attention_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def compute_bias(self, length: int) -> Array:
    """Relative position bias [1, heads, L, L] from the learned per-bucket table."""
    cfg = self.config
    table = self.param(
        "relative_attention_bias",
        nn.with_logical_partitioning(nn.initializers.normal(cfg.d_model**-0.5),
                                     ("relpos_buckets", "heads")),
        (cfg.relative_attention_num_buckets, cfg.num_heads), self.param_dtype)
    buckets = relative_position_buckets(length, length, cfg.relative_attention_num_buckets,
                                        cfg.relative_attention_max_distance)
    values = jnp.asarray(table, self.dtype)[buckets]  # q k h
    return jnp.transpose(values, (2, 0, 1))[None]

  @nn.compact
  def __call__(self, x: Array, additive_mask: Array, position_bias: Array | None,
               deterministic: bool = True) -> tuple[Array, Array]:
    cfg = self.config
    b, length, _ = x.shape
    # Init stddevs follow HF's T5 init; the query's includes the folded-in 1/sqrt(d_kv).
    dense = lambda n, std: _dense(cfg.inner_dim, ("embed", "heads"), n, self.dtype,
                                  self.param_dtype, std)
    q = dense("q", (cfg.d_model * cfg.d_kv)**-0.5)(x)
    k = dense("k", cfg.d_model**-0.5)(x)
    v = dense("v", cfg.d_model**-0.5)(x)
    q, k, v = (t.reshape(b, length, cfg.num_heads, cfg.d_kv) for t in (q, k, v))  # b l h d
    if position_bias is None:
      if not self.has_relative_attention_bias:
        raise ValueError("Only the first T5 layer owns the relative position bias; later "
                         "layers must receive it as `position_bias`.")
      position_bias = self.compute_bias(length)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)  # no 1/sqrt(d_kv): T5 convention
    scores = scores + position_bias + additive_mask
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(self.dtype)
    weights = nn.Dropout(cfg.dropout_rate)(weights, deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, length, cfg.inner_dim)
    out = _dense(cfg.d_model, ("heads", "embed"), "o", self.dtype, self.param_dtype,
                 cfg.inner_dim**-0.5)(out)
    return out, position_bias


class T5FeedForward(nn.Module):
  """``wo(act(wi x))`` (v1.0) or ``wo(act(wi_0 x) * wi_1 x)`` (gated, v1.1)."""

  config: T5Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    act = ACTIVATIONS[cfg.dense_act_fn]
    dense_in = lambda n: _dense(cfg.d_ff, ("embed", "mlp"), n, self.dtype, self.param_dtype,
                                cfg.d_model**-0.5)
    if cfg.is_gated_act:
      h = act(dense_in("wi_0")(x)) * dense_in("wi_1")(x)
    else:
      h = act(dense_in("wi")(x))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
    return _dense(cfg.d_model, ("mlp", "embed"), "wo", self.dtype, self.param_dtype,
                  cfg.d_ff**-0.5)(h)


class T5EncoderLayer(nn.Module):
  """Pre-norm residual self-attention then pre-norm residual feed-forward."""

  config: T5Config
  has_relative_attention_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, additive_mask: Array, position_bias: Array | None,
               deterministic: bool = True) -> tuple[Array, Array]:
    cfg = self.config
    norm = lambda n: T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, self.param_dtype, name=n)
    drop = nn.Dropout(cfg.dropout_rate)
    h, position_bias = T5SelfAttention(cfg, self.has_relative_attention_bias, self.dtype,
                                       self.param_dtype, name="attention")(
                                           norm("attention_norm")(x), additive_mask,
                                           position_bias, deterministic)
    x = x + drop(h, deterministic=deterministic)
    h = T5FeedForward(cfg, self.dtype, self.param_dtype, name="mlp")(
        norm("mlp_norm")(x), deterministic)
    x = x + drop(h, deterministic=deterministic)
    x = sharding_lib.constrain(x, ("activation_batch", "activation_length", "activation_embed"))
    return x, position_bias


class T5Encoder(nn.Module):
  """``(ids int [b, L], mask bool [b, L]) -> hidden [b, L, d_model]``.

  Padded positions (mask False) are excluded as attention keys, as in HF (an additive
  ``finfo.min``); their own outputs are computed but meaningless, and callers pass the mask on.
  """

  config: T5Config
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids: Array, mask: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    if ids.ndim != 2 or mask.shape != ids.shape:
      raise ValueError(f"T5Encoder expects ids [b, L] and a mask of the same shape, got ids "
                       f"{ids.shape} and mask {mask.shape}.")
    embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="token_embedding",
                     embedding_init=nn.with_logical_partitioning(
                         nn.initializers.normal(1.0), ("vocab", "embed")))
    drop = nn.Dropout(cfg.dropout_rate)
    x = drop(embed(ids), deterministic=deterministic)  # b l d
    # b 1 1 k: large negative on padded keys; added after the position bias like HF.
    additive_mask = jnp.where(mask.astype(bool), 0.0,
                              jnp.finfo(self.dtype).min).astype(self.dtype)[:, None, None, :]
    position_bias = None
    for i in range(cfg.num_layers):
      x, position_bias = T5EncoderLayer(cfg, has_relative_attention_bias=(i == 0),
                                        dtype=self.dtype, param_dtype=self.param_dtype,
                                        name=f"layers_{i}")(x, additive_mask, position_bias,
                                                            deterministic)
    x = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, self.param_dtype, name="final_norm")(x)
    return drop(x, deterministic=deterministic)
