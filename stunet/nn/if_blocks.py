"""DeepFloyd-IF-style spatial blocks: the closest public relative of Imagen's T2I U-Net (SPEC §2).

IF stage I is a pixel-space, T5-conditioned U-Net. Compared with the SD-style blocks of
`stunet.nn.blocks` it differs in three places, each mirrored here with diffusers' parameter
names so that `stunet.convert.diffusers_unet` maps checkpoints tensor for tensor:

- `AddedKVAttention` (diffusers `Attention` with `added_kv_proj_dim`, `AttnAddedKVProcessor`):
  one attention per block instead of a transformer. Pixels of a frame query keys/values made
  of the text tokens' projections followed by the frame's own pixels, so self- and
  cross-attention share one softmax. The text mask hides padded tokens; pixels are always
  visible.
- `TextTimeEmbedding` (diffusers `TextTimeEmbedding` + `AttentionPooling`): the text is pooled
  by attention from a mean token and added to the noise-level embedding.
- Resampling inside residual blocks (`blocks.ResBlock(resample=...)`), wired in
  `stunet.nn.stunet`.

Like the SD-style blocks they act on videos `b t h w c` frame by frame and broadcast the
per-example text over frames, so the inflated STUNet keeps them unchanged.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import attention
from stunet.nn import layers

Dtype = Any


class AddedKVAttention(nn.Module):
  """GroupNorm, attention over [text K/V; pixel K/V] of each frame, output projection, residual.

  Attributes:
    num_heads: attention heads.
    head_dim: channels per head.
    norm_groups: groups of the GroupNorm on the pixels (diffusers `group_norm`, eps 1e-5).
    cross_attention_norm: "group_norm" normalises the text over (tokens, channel group)
      before its projections, as IF does (diffusers `norm_cross`); "none" skips it.
    cross_attention_norm_groups: groups of that text GroupNorm (diffusers default 32).
  """

  num_heads: int
  head_dim: int
  norm_groups: int = 32
  cross_attention_norm: str = "group_norm"
  cross_attention_norm_groups: int = 32
  attention_impl: str = "auto"  # stunet.nn.attention
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, text, text_mask):  # x: b t h w c, text: b L dc, text_mask: b L
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, t, hgt, wid, c = x.shape
    n, length = hgt * wid, text.shape[1]
    inner = self.num_heads * self.head_dim
    qkv_axes = ("embed", "heads")
    proj = lambda name: layers.dense(inner, axes=qkv_axes, name=name, **kw)

    if self.cross_attention_norm == "group_norm":
      # GroupNorm over (tokens, channels of a group), padded tokens included, as in diffusers.
      text = layers.GroupNorm(self.cross_attention_norm_groups, 1e-5, name="norm_cross",
                              **kw)(text[:, :, None, :])[:, :, 0, :]
    elif self.cross_attention_norm != "none":
      raise ValueError(f"cross_attention_norm must be 'group_norm' or 'none', got "
                       f"{self.cross_attention_norm!r}")
    h = layers.GroupNorm(self.norm_groups, 1e-5, name="group_norm", **kw)(x)
    # Frames attend independently: folded into the batch, or, when they are split over a
    # context axis, kept a dim of their own (`layers.frames_sharded`).
    grouped = layers.frames_sharded(x)
    h = h.reshape(b, t, n, c) if grouped else h.reshape(b * t, n, c)
    q, k, v = proj("to_q")(h), proj("to_k")(h), proj("to_v")(h)

    # Text keys/values are computed once per example and shared by all its frames.
    def per_frame(a):  # b L inner -> b t L inner (grouped) or (b t) L inner
      a = jnp.broadcast_to(a[:, None], (b, t, length, inner))
      return a if grouped else a.reshape(b * t, length, inner)

    k = jnp.concatenate([per_frame(proj("add_k_proj")(text)), k], axis=-2)
    v = jnp.concatenate([per_frame(proj("add_v_proj")(text)), v], axis=-2)
    mask = jnp.concatenate([text_mask.astype(jnp.bool_), jnp.ones((b, n), jnp.bool_)],
                           axis=1)  # b (L + n): the same for every frame
    if not grouped:
      mask = jnp.repeat(mask, t, axis=0)  # (b t) (L + n)
    split = lambda a: a.reshape(a.shape[:-1] + (self.num_heads, self.head_dim))
    out = attention.dot_product_attention(split(q), split(k), split(v), mask,
                                          self.attention_impl)
    out = out.reshape(out.shape[:-2] + (inner,))
    out = layers.dense(c, axes=("heads", "embed"), name="to_out", **kw)(out)
    return x + out.reshape(b, t, hgt, wid, c)


class AttentionPooling(nn.Module):
  """Pools `b L d` to `b d`: a query from the mean token attends over [mean; tokens].

  No mask, as in diffusers' AttentionPooling that IF was trained with: the mean and the keys
  include padded positions.
  """

  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):  # b L d
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, _, d = x.shape
    if d % self.num_heads:
      raise ValueError(f"Text width {d} is not divisible by model.text_pooling_heads="
                       f"{self.num_heads}.")
    pos = self.param("positional_embedding",
                     layers.partitioned(nn.initializers.normal(d ** -0.5), ("embed",)), (d,),
                     self.param_dtype)
    query_token = jnp.mean(x, axis=1, keepdims=True) + pos.astype(x.dtype)  # b 1 d
    tokens = jnp.concatenate([query_token, x], axis=1)  # b (L + 1) d
    split = lambda a: a.reshape(a.shape[:-1] + (self.num_heads, d // self.num_heads))
    q = split(layers.dense(d, axes=("embed", "heads"), name="q_proj", **kw)(query_token))
    k = split(layers.dense(d, axes=("embed", "heads"), name="k_proj", **kw)(tokens))
    v = split(layers.dense(d, axes=("embed", "heads"), name="v_proj", **kw)(tokens))
    return jax.nn.dot_product_attention(q, k, v).reshape(b, d)


class TextTimeEmbedding(nn.Module):
  """LayerNorm, attention pooling, projection to the embedding width, LayerNorm: `b L d -> b e`."""

  embed_dim: int
  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, text):  # b L d
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = layers.layer_norm(name="norm1", **kw)(text)
    h = AttentionPooling(self.num_heads, name="pool", **kw)(h)
    h = layers.dense(self.embed_dim, name="proj", **kw)(h)
    return layers.layer_norm(name="norm2", **kw)(h)  # b e
