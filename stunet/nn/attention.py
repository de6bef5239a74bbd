"""Multi-head attention used by the spatial transformer and the temporal attention (SPEC §2).

Parameter layout follows diffusers' `Attention` (`to_q`, `to_k`, `to_v` without bias,
`to_out` with bias) so public checkpoints map onto it tensor for tensor.

The kernel is chosen by `implementation` (`model.attention_impl`), resolved at trace time by
`resolve_implementation`:
- `"xla"`: `jax.nn.dot_product_attention`'s XLA path, which materialises the f32 score matrix
  `[B, heads, n, s]` (what jax 0.10 runs when no implementation is named, on every backend).
- `"cudnn"`: cuDNN's fused flash attention on NVIDIA GPUs (bf16/fp16 inputs, head dim a
  multiple of 8 and at most 256 on Hopper, 128 before, even sequence lengths); the scores
  never reach HBM. An attention it cannot run is an error.
- `"auto"` (default): per attention call, cuDNN where it applies, XLA otherwise (e.g. the
  5-frame temporal attention of `base`). CPU and float32 runs are unchanged by the default.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import layers

Dtype = Any

ATTENTION_IMPLS = ("auto", "xla", "cudnn")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def cudnn_rejection(dtype, head_dim: int, q_len: int, kv_len: int, backend: str,
                    compute_capability: str = "0.0") -> str | None:
  """Why cuDNN's fused attention cannot take these inputs, or None when it can."""
  if backend not in ("gpu", "cuda"):
    return f"backend {backend!r} is not a GPU"
  if jnp.dtype(dtype) not in tuple(jnp.dtype(d) for d in _CUDNN_DTYPES):
    return f"dtype {jnp.dtype(dtype).name} is not bfloat16/float16"
  major = int(str(compute_capability).split(".")[0] or 0)
  max_head_dim = 256 if major >= 9 else 128  # Hopper raised cuDNN's limit
  if head_dim % 8 or head_dim > max_head_dim:
    return f"head dim {head_dim} is not a multiple of 8 up to {max_head_dim}"
  # cuDNN's backward pass refuses odd sequence lengths (seen with jax 0.11 on an H200 for the
  # 5-frame temporal attention of `base`); a forward-only rule would break training.
  if q_len % 2 or kv_len % 2:
    return f"sequence lengths {q_len} (queries) / {kv_len} (keys) are not both even"
  return None


def why_not_cudnn(dtype, head_dim: int, q_len: int, kv_len: int) -> str | None:
  """`cudnn_rejection` on the default backend and its first device."""
  backend = jax.default_backend()
  capability = "0.0"
  if backend in ("gpu", "cuda"):
    capability = str(getattr(jax.devices()[0], "compute_capability", "0.0"))
  return cudnn_rejection(dtype, head_dim, q_len, kv_len, backend, capability)


def resolve_implementation(implementation: str, dtype, head_dim: int, q_len: int = 2,
                           kv_len: int = 2) -> str:
  """`"auto"` -> `"cudnn"` where cuDNN applies, else `"xla"`; an explicit `"cudnn"` that
  cannot apply raises, naming the reason."""
  if implementation not in ATTENTION_IMPLS:
    raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLS}, got "
                     f"{implementation!r} (config.model.attention_impl)")
  if implementation == "xla":
    return "xla"
  reason = why_not_cudnn(dtype, head_dim, q_len, kv_len)
  if implementation == "auto":
    return "xla" if reason else "cudnn"
  if reason:
    raise ValueError(f"config.model.attention_impl='cudnn' cannot run this attention: {reason}. "
                     "Use 'auto' to fall back to XLA wherever cuDNN does not apply.")
  return "cudnn"


def dot_product_attention(q, k, v, mask=None, implementation: str = "auto"):
  """`q [B, n, heads, dh]`, `k, v [B, s, heads, dh]`, key mask `[B, s]` -> `[B, n, heads, dh]`.

  `q` may also be `[B, t, n, heads, dh]` (and `k, v` `[B, t, s, heads, dh]` or shared by the t
  groups as `[B, s, heads, dh]`): each group attends on its own.

  The one place every attention in the model goes through, so the kernel choice holds for
  spatial, cross, temporal and pooling attention alike.
  """
  if q.ndim == 5:
    # `q [B, t, n, heads, dh]`: attention within each of t groups (a video's frames) that are
    # kept a dim of their own rather than folded into B (`layers.frames_sharded`).
    kv_axis = 1 if k.ndim == 5 else None
    return jax.vmap(lambda q, k, v: dot_product_attention(q, k, v, mask, implementation),
                    in_axes=(1, kv_axis, kv_axis), out_axes=1)(q, k, v)
  impl = resolve_implementation(implementation, q.dtype, q.shape[-1], q.shape[1], k.shape[1])
  if mask is not None:
    mask = mask.astype(jnp.bool_)[:, None, None, :]  # B 1 1 s: broadcast over heads, queries
    if impl == "cudnn":
      # cuDNN takes the mask as an additive bias whose query dim must be the queries' length
      # (no broadcast); B x n x s is small beside the B x heads x n x s scores it avoids.
      mask = jnp.broadcast_to(mask, (mask.shape[0], 1, q.shape[1], mask.shape[-1]))
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)


class Attention(nn.Module):
  """`x [B, n, d]` attends to `context [B, s, dc]` (itself when None), key mask `[B, s]`."""

  num_heads: int
  head_dim: int
  out_features: int | None = None
  zero_init_out: bool = False
  implementation: str = "auto"  # see the module docstring
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
    out = dot_product_attention(q, k, v, mask, self.implementation)
    out = out.reshape(out.shape[:-2] + (inner,))
    return layers.dense(self.out_features or x.shape[-1], zero_init=self.zero_init_out,
                        axes=("heads", "embed"), name="to_out", **kw)(out)
