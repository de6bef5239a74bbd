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
- `"splash"`: Pallas' splash attention kernel for TPU (`jax.experimental.pallas.ops.tpu`),
  a blockwise flash kernel: no score matrix in HBM. Mosaic kernels are not partitioned by
  XLA, so it runs inside `shard_map` over the mesh axes the rules give the batch (and a
  video's frames) and the heads; each device attends its own rows. Query and key lengths must
  be multiples of 128; a key mask becomes the kernel's segment ids, so every query row needs
  at least one valid key (captions always have one). Compiled for TPU devices (the mesh's, so
  `aot_check` compiles it from a CPU host); on other devices it runs in Pallas' interpret
  mode, which is slow and meant for tests. An attention it cannot run is an error.
- `"auto"` (default): per attention call, cuDNN where it applies on GPUs and splash where it
  applies on TPUs, XLA otherwise (e.g. the 5-frame temporal attention of `base`). CPU and
  float32 runs are unchanged by the default.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.nn import layers

Dtype = Any

ATTENTION_IMPLS = ("auto", "xla", "cudnn", "splash")
SPLASH_BLOCK = 128  # the kernel's lane width: sequence lengths must be multiples of it
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


def target_platform() -> str:
  """The platform the traced computation is compiled for: that of the enclosing mesh's
  devices (compile-only TPU devices when `aot_check` compiles from a CPU host), else the
  default backend's."""
  mesh = jax.sharding.get_abstract_mesh()
  device = getattr(mesh, "abstract_device", None) if mesh is not None and not mesh.empty else None
  return device.platform if device is not None else jax.default_backend()


def splash_rejection(dtype, q_len: int, kv_len: int) -> str | None:
  """Why the splash kernel cannot take these inputs, or None when it can."""
  if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)):
    return f"dtype {jnp.dtype(dtype).name} is not bfloat16/float32"
  if q_len % SPLASH_BLOCK or kv_len % SPLASH_BLOCK:
    return (f"sequence lengths {q_len} (queries) / {kv_len} (keys) are not both multiples of "
            f"{SPLASH_BLOCK}")
  return None


def resolve_implementation(implementation: str, dtype, head_dim: int, q_len: int = 2,
                           kv_len: int = 2) -> str:
  """`"auto"` -> `"cudnn"` where cuDNN applies, `"splash"` where splash applies on a TPU,
  else `"xla"`; an explicit `"cudnn"` or `"splash"` that cannot apply raises, naming the
  reason."""
  if implementation not in ATTENTION_IMPLS:
    raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLS}, got "
                     f"{implementation!r} (config.model.attention_impl)")
  if implementation == "xla":
    return "xla"
  if implementation == "splash" or (implementation == "auto" and target_platform() == "tpu"):
    reason = splash_rejection(dtype, q_len, kv_len)
    if implementation == "auto":
      return "xla" if reason else "splash"
    if reason:
      raise ValueError(f"config.model.attention_impl='splash' cannot run this attention: "
                       f"{reason}. Use 'auto' to fall back to XLA wherever splash does not "
                       "apply.")
    return "splash"
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
  impl = resolve_implementation(implementation, q.dtype, q.shape[-1], q.shape[-3], k.shape[-3])
  if impl == "splash":
    return splash_attention(q, k, v, mask)
  if q.ndim == 5:
    # `q [B, t, n, heads, dh]`: attention within each of t groups (a video's frames) that are
    # kept a dim of their own rather than folded into B (`layers.frames_sharded`).
    kv_axis = 1 if k.ndim == 5 else None
    return jax.vmap(lambda q, k, v: dot_product_attention(q, k, v, mask, impl),
                    in_axes=(1, kv_axis, kv_axis), out_axes=1)(q, k, v)
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


def _block(length: int) -> int:
  """The largest of 512 / 256 / 128 that divides `length` (a multiple of 128)."""
  return next(b for b in (512, 256, SPLASH_BLOCK) if length % b == 0)


def _splash_local(q, k, v, mask, interpret: bool):
  """Splash attention on one device's rows: `q [b, n, h, d]`, `k, v [b, s, h, d]`, mask
  `[b, s]` or None; or grouped, `q [b, t, n, h, d]` with `k, v [b, t, s, h, d]` or shared
  `[b, s, h, d]` (the groups are folded into the batch here, on the device's own rows)."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (  # pylint: disable=g-import-not-at-top
      splash_attention_kernel as kernel_lib, splash_attention_mask as mask_lib)
  if q.ndim == 5:
    b, t = q.shape[:2]
    fold = lambda a: a.reshape((b * t,) + a.shape[2:])
    per_group = lambda a: jnp.repeat(a, t, axis=0)  # shared keys: one copy per group
    k, v = (fold(k), fold(v)) if k.ndim == 5 else (per_group(k), per_group(v))
    mask = None if mask is None else per_group(mask)
    out = _splash_local(fold(q), k, v, mask, interpret)
    return out.reshape(q.shape[:-1] + (v.shape[-1],))
  b, n, heads, dh = q.shape
  s = k.shape[1]
  bq, bkv = _block(n), _block(s)
  sizes = kernel_lib.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv,
                                block_q_dkv=bq, block_kv_dkv=bkv, block_kv_dkv_compute=bkv,
                                block_q_dq=bq, block_kv_dq=bkv)
  kernel = kernel_lib.make_splash_mha(
      mask_lib.MultiHeadMask([mask_lib.FullMask((n, s)) for _ in range(heads)]),
      head_shards=1, q_seq_shards=1, block_sizes=sizes, interpret=interpret)
  heads_first = lambda a: jnp.swapaxes(a, 1, 2)  # b h len d: the kernel's per-example layout
  q = heads_first(q * jnp.asarray(dh ** -0.5, q.dtype))  # the kernel does not scale
  k, v = heads_first(k), heads_first(v)
  if mask is None:
    out = jax.vmap(kernel)(q, k, v)
  else:
    # Padded keys get segment 1, every query segment 0: a query attends its valid keys only.
    segments = kernel_lib.SegmentIds(q=jnp.zeros((b, n), jnp.int32),
                                     kv=jnp.where(mask, 0, 1).astype(jnp.int32))
    out = jax.vmap(lambda q, k, v, seg: kernel(q, k, v, segment_ids=seg))(q, k, v, segments)
  return jnp.swapaxes(out, 1, 2).astype(v.dtype)


# Trace-time tally of the splash kernels' FLOPs (`count_splash_flops`): XLA's cost analysis
# cannot see inside a Mosaic kernel, so a compiled step's FLOP count leaves them out.
_splash_flops: list[float] | None = None


@contextlib.contextmanager
def count_splash_flops() -> Iterator[list[float]]:
  """Collects, while tracing inside the block, the forward FLOPs of every splash attention
  call (2 matmuls of `2 n s d` per head and example, whole-array shapes); a differentiated
  call's backward kernels add about twice as many again."""
  global _splash_flops
  previous, _splash_flops = _splash_flops, []
  try:
    yield _splash_flops
  finally:
    _splash_flops = previous


def splash_attention(q, k, v, mask=None):
  """`dot_product_attention` through the splash kernel (module docstring), in `shard_map`
  over the enclosing mesh: the batch as the rules shard it, the heads over their axis."""
  from stunet.parallel import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  interpret = target_platform() != "tpu"
  if _splash_flops is not None:
    groups = q.shape[0] * (q.shape[1] if q.ndim == 5 else 1)
    n, heads, d = q.shape[-3:]
    _splash_flops.append(4.0 * groups * heads * n * k.shape[-3] * d)
  mask = None if mask is None else mask.astype(jnp.bool_)
  mesh = sharding_lib.context_mesh()
  rules = nn.get_logical_axis_rules()
  if mesh is None or not rules:
    return _splash_local(q, k, v, mask, interpret)
  P = jax.sharding.PartitionSpec
  if q.ndim == 5:  # grouped: a video's frames, split as the rules split them
    batch, frames, _, heads, _ = sharding_lib.mesh_spec(
        ("activation_batch", "activation_frames", None, "heads", None), q.shape, mesh, rules)
    spec = P(batch, frames, None, heads, None)
    kv_spec = spec if k.ndim == 5 else P(batch, None, heads, None)
  else:
    batch, _, heads, _ = sharding_lib.mesh_spec(("activation_batch", None, "heads", None),
                                                q.shape, mesh, rules)
    spec = kv_spec = P(batch, None, heads, None)
  # Keys share the queries' batch and head split (the lengths are never split here).
  mask_spec = P(batch, None)
  in_specs = (spec, kv_spec, kv_spec) + ((mask_spec,) if mask is not None else ())
  fn = (lambda q, k, v, m: _splash_local(q, k, v, m, interpret)) if mask is not None else (
      lambda q, k, v: _splash_local(q, k, v, None, interpret))
  args = (q, k, v) + ((mask,) if mask is not None else ())
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=spec,
                       check_vma=False)(*args)
