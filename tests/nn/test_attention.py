"""The attention kernel choice (`model.attention_impl`): resolution rules and the XLA path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import attention
from stunet.nn.config import UNetConfig


def _reference(q, k, v, mask):
  """Softmax attention in float64 numpy: [B n h d], [B s h d], key mask [B s]."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  scores = np.einsum("bnhd,bshd->bhns", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(np.asarray(mask)[:, None, None, :], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("bhns,bshd->bnhd", weights, v)


@pytest.mark.parametrize("impl", ["auto", "xla"])
def test_kernel_matches_reference_with_key_mask(impl):
  rng = np.random.default_rng(0)
  q = rng.standard_normal((2, 6, 2, 8)).astype(np.float32)
  k = rng.standard_normal((2, 5, 2, 8)).astype(np.float32)
  v = rng.standard_normal((2, 5, 2, 8)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
  out = attention.dot_product_attention(q, k, v, mask, implementation=impl)
  # float32 softmax over 5 keys and 8-wide dots: a few ulps of the unit-scale outputs.
  np.testing.assert_allclose(np.asarray(out), _reference(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_grouped_queries_attend_within_their_group():
  """`q [B, t, n, h, d]`: each of the t groups (a video's frames, kept a dim of their own under
  frame parallelism) attends to its own keys, or to keys shared by all groups."""
  rng = np.random.default_rng(2)
  q = rng.standard_normal((2, 3, 6, 2, 8)).astype(np.float32)
  k = rng.standard_normal((2, 3, 5, 2, 8)).astype(np.float32)
  v = rng.standard_normal((2, 3, 5, 2, 8)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
  out = np.asarray(attention.dot_product_attention(q, k, v, mask))
  shared = np.asarray(attention.dot_product_attention(q, k[:, 0], v[:, 0], mask))
  for g in range(3):
    np.testing.assert_allclose(out[:, g], _reference(q[:, g], k[:, g], v[:, g], mask),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(shared[:, g], _reference(q[:, g], k[:, 0], v[:, 0], mask),
                               atol=1e-5, rtol=1e-5)


def test_auto_is_bitwise_the_xla_path_on_cpu():
  module = attention.Attention(2, 4, implementation="auto")
  x = jnp.asarray(np.random.default_rng(1).standard_normal((3, 7, 8)), jnp.float32)
  params = module.init(jax.random.key(0), x)
  xla = attention.Attention(2, 4, implementation="xla")
  np.testing.assert_array_equal(np.asarray(module.apply(params, x)),
                                np.asarray(xla.apply(params, x)))


@pytest.mark.parametrize("args, reason", [
    (("float32", 64, 16, 16, "gpu", "9.0"), "dtype float32"),
    (("bfloat16", 12, 16, 16, "gpu", "9.0"), "head dim 12"),
    (("bfloat16", 192, 16, 16, "gpu", "8.0"), "up to 128"),
    (("bfloat16", 64, 5, 5, "gpu", "9.0"), "sequence lengths 5"),
    (("bfloat16", 64, 16, 16, "cpu", "0.0"), "not a GPU"),
])
def test_cudnn_rejections_name_the_reason(args, reason):
  dtype, *rest = args
  assert reason in attention.cudnn_rejection(jnp.dtype(dtype), *rest)


def test_cudnn_accepts_what_it_runs():
  assert attention.cudnn_rejection(jnp.bfloat16, 64, 1024, 128, "gpu", "9.0") is None
  assert attention.cudnn_rejection(jnp.float16, 256, 20, 20, "gpu", "9.0") is None


def test_resolution_and_errors():
  assert attention.resolve_implementation("auto", jnp.bfloat16, 64) == (
      "cudnn" if attention.why_not_cudnn(jnp.bfloat16, 64, 2, 2) is None else "xla")
  assert attention.resolve_implementation("xla", jnp.bfloat16, 64) == "xla"
  with pytest.raises(ValueError, match="attention implementation must be one of"):
    attention.resolve_implementation("flash", jnp.float32, 64)
  if jax.default_backend() == "cpu":
    with pytest.raises(ValueError, match="attention_impl='cudnn' cannot run.*not a GPU"):
      attention.resolve_implementation("cudnn", jnp.bfloat16, 64)


def test_config_field_is_validated():
  with pytest.raises(ValueError, match=r"config.model.attention_impl='flash'"):
    UNetConfig.from_config({"attention_impl": "flash"})
  assert UNetConfig.from_config({}).attention_impl == "auto"


# Splash (Pallas TPU kernel) runs here in Pallas' interpret mode: the same kernel program, on
# the CPU. Its sequence lengths must be multiples of 128.
def _qkv(shape_q, shape_kv, seed=3, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal(shape_q).astype(dtype), rng.standard_normal(shape_kv).astype(dtype),
          rng.standard_normal(shape_kv).astype(dtype))


def test_splash_matches_reference_with_key_mask():
  q, k, v = _qkv((2, 128, 2, 64), (2, 256, 2, 64))
  mask = np.arange(256)[None, :] < np.array([[256], [37]])  # one full, one padded caption
  out = attention.dot_product_attention(q, k, v, mask, implementation="splash")
  np.testing.assert_allclose(np.asarray(out), _reference(q, k, v, mask), atol=2e-5, rtol=2e-5)
  out = attention.dot_product_attention(q, k, v, None, implementation="splash")
  np.testing.assert_allclose(np.asarray(out), _reference(q, k, v, np.ones((2, 256), bool)),
                             atol=2e-5, rtol=2e-5)


def test_splash_grouped_queries_and_gradients_match_xla():
  q, k, v = _qkv((1, 2, 128, 2, 64), (1, 128, 2, 64))  # frames sharing keys (cross-attention)
  mask = np.arange(128)[None, :] < 100

  def loss(impl):
    return lambda q, k, v: jnp.sum(jnp.sin(attention.dot_product_attention(q, k, v, mask, impl)))
  for impl_out, xla_out in zip(jax.grad(loss("splash"), argnums=(0, 1, 2))(q, k, v),
                               jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(np.asarray(impl_out), np.asarray(xla_out), atol=5e-5, rtol=5e-5)


def test_splash_in_shard_map_over_a_mesh_matches_xla():
  """Under a mesh the kernel runs in `shard_map` over the batch (and frames) and heads axes."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  rules = (("activation_batch", ("data", "fsdp")), ("activation_frames", "context"),
           ("heads", "tensor"))
  mesh = jax.make_mesh((2, 2, 2), ("fsdp", "context", "tensor"),
                       axis_types=(AxisType.Auto,) * 3)
  q, k, v = _qkv((2, 2, 128, 2, 64), (2, 2, 128, 2, 64))
  mask = np.arange(128)[None, :] < np.array([[128], [50]])

  def run(impl):
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      sharded = NamedSharding(mesh, P("fsdp", "context", None, "tensor"))
      args = [jax.device_put(a, sharded) for a in (q, k, v)]
      return jax.jit(lambda q, k, v: attention.dot_product_attention(q, k, v, mask, impl))(*args)
  splash = run("splash")
  np.testing.assert_allclose(np.asarray(splash), np.asarray(run("xla")), atol=2e-5, rtol=2e-5)
  assert splash.sharding.spec[:2] == ("fsdp", "context")


def test_splash_resolution():
  with pytest.raises(ValueError, match=r"attention_impl='splash' cannot run this attention: "
                                       r"sequence lengths 5 \(queries\) / 5 \(keys\) are not "
                                       r"both multiples of 128"):
    attention.resolve_implementation("splash", jnp.float32, 64, 5, 5)
  assert attention.resolve_implementation("splash", jnp.bfloat16, 64, 256, 128) == "splash"
  assert UNetConfig.from_config({"attention_impl": "splash"}).attention_impl == "splash"


def test_auto_picks_splash_for_a_tpu_target_where_it_applies(monkeypatch):
  monkeypatch.setattr(attention, "target_platform", lambda: "tpu")
  assert attention.resolve_implementation("auto", jnp.bfloat16, 64, 1024, 128) == "splash"
  assert attention.resolve_implementation("auto", jnp.bfloat16, 64, 64, 128) == "xla"  # 8x8 px
  assert attention.resolve_implementation("auto", jnp.bfloat16, 64, 5, 5) == "xla"  # 5 frames


def test_splash_flops_are_tallied_at_trace_time():
  """XLA's cost analysis cannot see into the kernel; `aot_check` adds this tally instead."""
  q, k, v = _qkv((2, 3, 128, 2, 64), (2, 256, 2, 64))
  with attention.count_splash_flops() as tally:
    jax.eval_shape(lambda q, k, v: attention.dot_product_attention(q, k, v, None, "splash"),
                   q, k, v)
  assert tally == [4.0 * (2 * 3) * 2 * 128 * 256 * 64]  # QK^T and PV, 2 n s d each per head
  jax.eval_shape(lambda q, k, v: attention.dot_product_attention(q, k, v, None, "splash"),
                 q, k, v)
  assert len(tally) == 1  # nothing is counted outside the block
