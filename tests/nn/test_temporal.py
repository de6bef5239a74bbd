"""Temporal layers are exact identities / nearest-neighbour resamplers at init (SPEC §2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import temporal
from stunet.nn.stunet import STUNet

from tests.nn.unet_testing import example_inputs, randomize, tiny_unet_config


@pytest.fixture(scope="module")
def video():
  return jax.random.normal(jax.random.key(0), (2, 8, 4, 6, 16))  # b t h w c


@pytest.mark.parametrize("factor,kernel", [(2, 3), (4, 3), (2, 5), (3, 1)])
def test_downsample_takes_every_fth_frame_at_init(factor, kernel):
  x = jax.random.normal(jax.random.key(1), (2, 12, 4, 6, 8))
  m = temporal.TemporalDownsample(factor, kernel)
  y = m.apply(m.init(jax.random.key(2), x), x)
  assert y.shape == (2, 12 // factor, 4, 6, 8)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(x[:, ::factor]))


@pytest.mark.parametrize("factor,kernel", [(2, 3), (4, 5)])
def test_upsample_repeats_each_frame_at_init(factor, kernel, video):
  m = temporal.TemporalUpsample(factor, kernel)
  y = m.apply(m.init(jax.random.key(2), video), video)
  assert y.shape == (2, 8 * factor, 4, 6, 16)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(jnp.repeat(video, factor, axis=1)))


def test_temporal_conv_block_is_identity_at_init(video):
  m = temporal.TemporalConvBlock(kernel_size=3, norm_groups=4)
  params = m.init(jax.random.key(3), video)
  np.testing.assert_array_equal(np.asarray(m.apply(params, video)), np.asarray(video))


@pytest.mark.parametrize("position_encoding", ["sinusoidal", "none"])
def test_temporal_attention_block_is_identity_at_init(video, position_encoding):
  m = temporal.TemporalAttentionBlock(num_heads=4, position_encoding=position_encoding)
  params = m.init(jax.random.key(4), video)
  np.testing.assert_array_equal(np.asarray(m.apply(params, video)), np.asarray(video))


def test_temporal_attention_mixes_frames_not_positions(video):
  """With non-zero weights, a change in one frame at one pixel moves only that pixel's column."""
  m = temporal.TemporalAttentionBlock(num_heads=4)
  params = {"params": randomize(m.init(jax.random.key(5), video)["params"], scale=0.05)}
  y0 = m.apply(params, video)
  # A random (not constant) change: LayerNorm would remove a constant shift over channels.
  y1 = m.apply(params, video.at[:, 0, 1, 2].add(jax.random.normal(jax.random.key(6), (16,))))
  changed = np.abs(np.asarray(y1 - y0)).max(axis=-1) > 0  # b t h w
  assert changed[:, :, 1, 2].all()  # every frame of that pixel column reacts
  changed[:, :, 1, 2] = False
  assert not changed.any()


def test_temporal_conv_kernel_is_one_dimensional(video):
  m = temporal.TemporalConv(16, kernel_size=3)
  params = m.init(jax.random.key(6), video)
  assert params["params"]["kernel"].value.shape == (3, 16, 16)
  assert params["params"]["kernel"].names == (None, "conv_in", "conv_out")


def test_identity_kernel_needs_square_channels():
  with pytest.raises(ValueError, match="c_in == c_out"):
    temporal.identity_temporal_kernel_init(None, (3, 4, 8))


@pytest.mark.parametrize("stride,kernel,frames", [(1, 3, 8), (2, 3, 8), (3, 5, 9), (1, 1, 4)])
def test_matmul_and_conv_implementations_agree(stride, kernel, frames):
  x = jax.random.normal(jax.random.key(7), (2, frames, 3, 5, 8))
  ms = {impl: temporal.TemporalConv(12, kernel, stride=stride, implementation=impl)
        for impl in temporal.TEMPORAL_CONV_IMPLS}
  params = randomize(ms["conv"].init(jax.random.key(8), x)["params"], scale=0.3)

  def loss(p, x, impl):
    return jnp.sum(jnp.sin(ms[impl].apply({"params": p}, x)))

  outs = {impl: jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)(
      params, x, impl) for impl in ms}
  assert ms["conv"].apply({"params": params}, x).shape[1] == (frames - 1) // stride + 1
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               outs["conv"], outs["matmul"])


def test_unknown_temporal_conv_implementation_is_named():
  x = jnp.zeros((1, 4, 2, 2, 4))
  with pytest.raises(ValueError, match="implementation"):
    temporal.TemporalConv(4, implementation="fft").init(jax.random.key(0), x)


def _frame_dependence(fn, x):
  """`[t_out, t_in]` matrix of the Jacobian's largest magnitude per (output, input) frame pair,
  and the Jacobian rows flattened per output frame."""
  jac = jax.jacrev(fn)(x)  # b t' h w c b t h w c
  per_frame = jac[0]  # t' h w c b t h w c
  dep = jnp.abs(per_frame).reshape(per_frame.shape[0], -1, x.shape[1],
                                   int(np.prod(x.shape[2:]))).max(axis=(1, 3))
  return np.asarray(dep), np.asarray(per_frame.reshape(per_frame.shape[0], -1))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_resamplers_reach_every_frame(factor):
  """SPEC §2: stride f reads every input frame only with kernel >= 2f - 1. With the kernel the
  config derives (`temporal_resample_kernel_for`) and trained-like (random) weights, every
  input frame reaches the down-sampler's output, and no two up-sampled frames are copies."""
  kernel = tiny_unet_config().temporal_resample_kernel_for(factor)
  assert kernel == max(3, 2 * factor - 1)
  frames = 4 * factor
  x = jax.random.normal(jax.random.key(10), (1, frames, 2, 1, 4))
  down = temporal.TemporalDownsample(factor, kernel)
  params = {"params": randomize(down.init(jax.random.key(11), x)["params"], seed=12)}
  dep, _ = _frame_dependence(lambda v: down.apply(params, v), x)
  assert dep.shape == (frames // factor, frames)
  assert (dep.max(axis=0) > 0).all()  # every input frame reaches some output frame
  y = x[:, :frames // factor]
  up = temporal.TemporalUpsample(factor, kernel)
  params = {"params": randomize(up.init(jax.random.key(13), y)["params"], seed=14)}
  dep, rows = _frame_dependence(lambda v: up.apply(params, v), y)
  assert dep.shape == (frames, frames // factor)
  assert (dep.max(axis=0) > 0).all()
  assert len(np.unique(rows, axis=0)) == frames  # every output frame its own function


def test_kernel_three_at_factor_four_skips_frames():
  """The bug the derived kernel fixes: k=3, f=4 never reads frames 4j+2 and up-samples
  frames 4j+1 and 4j+2 identically."""
  x = jax.random.normal(jax.random.key(10), (1, 8, 2, 1, 4))
  down = temporal.TemporalDownsample(4, 3)
  params = {"params": randomize(down.init(jax.random.key(11), x)["params"], seed=12)}
  dep, _ = _frame_dependence(lambda v: down.apply(params, v), x)
  assert (dep.max(axis=0)[2::4] == 0).all()
  up = temporal.TemporalUpsample(4, 3)
  y = x[:, :2]
  params = {"params": randomize(up.init(jax.random.key(13), y)["params"], seed=14)}
  out = up.apply(params, y)
  np.testing.assert_array_equal(np.asarray(out[:, 1::4]), np.asarray(out[:, 2::4]))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_derived_kernels_are_nearest_neighbour_at_init(factor):
  kernel = tiny_unet_config().temporal_resample_kernel_for(factor)
  x = jax.random.normal(jax.random.key(1), (2, 3 * factor, 2, 3, 8))
  down = temporal.TemporalDownsample(factor, kernel)
  np.testing.assert_array_equal(np.asarray(down.apply(down.init(jax.random.key(2), x), x)),
                                np.asarray(x[:, ::factor]))
  up = temporal.TemporalUpsample(factor, kernel)
  np.testing.assert_array_equal(np.asarray(up.apply(up.init(jax.random.key(2), x), x)),
                                np.asarray(jnp.repeat(x, factor, axis=1)))


def test_each_level_gets_the_kernel_its_factor_needs():
  """Factor-2 levels keep the configured kernel 3 (same parameter tree as before), an x4
  level gets 7; a larger configured kernel is kept."""
  for configured, expected in ((3, (3, 7)), (9, (9, 9))):
    cfg = tiny_unet_config(temporal_factors=(2, 4), temporal_resample_kernel=configured)
    params = jax.eval_shape(STUNet(cfg).init, jax.random.key(0),
                            *example_inputs(1, 8, 8, 8))["params"]
    for level, k in enumerate(expected):
      assert params[f"down_{level}"]["temporal_down"]["conv"]["kernel"].value.shape[0] == k
      assert params[f"up_{level + 1}"]["temporal_up"]["conv"]["kernel"].value.shape[0] == k


@pytest.mark.parametrize("factor,kernel,taps", [
    (2, 3, [1, 2, 1]), (2, 5, [0, 1, 2, 1, 0]), (3, 5, [1, 2, 3, 2, 1]),
    (4, 7, [1, 2, 3, 4, 3, 2, 1])])
def test_linear_kernel_is_a_normalised_triangle(factor, kernel, taps):
  k = np.asarray(temporal.linear_temporal_kernel_init(factor)(None, (kernel, 3, 3)))
  taps = np.asarray(taps, np.float64) / sum(taps)
  np.testing.assert_allclose(k, taps[:, None, None] * np.eye(3)[None], rtol=1e-6)
  with pytest.raises(ValueError, match="c_in == c_out"):
    temporal.linear_temporal_kernel_init(factor)(None, (kernel, 3, 4))


def test_linear_resamplers_filter_and_interpolate_at_init():
  """Factor 2: down = 1/4, 1/2, 1/4 around frames 0, 2, 4, ... (the first frame repeated
  before the clip); up = each coarse frame, then 3/4 of it and 1/4 of the next (edges held)."""
  x = jax.random.normal(jax.random.key(1), (2, 8, 3, 2, 4))
  down = temporal.TemporalDownsample(2, 3, init_scheme="linear")
  y = np.asarray(down.apply(down.init(jax.random.key(2), x), x))
  xe = np.asarray(x, np.float64)
  padded = np.concatenate([xe[:, :1], xe, xe[:, -1:]], axis=1)  # edge frames
  ref = 0.25 * padded[:, 0:8:2] + 0.5 * padded[:, 1:9:2] + 0.25 * padded[:, 2:10:2]
  np.testing.assert_allclose(y, ref, atol=1e-6)
  up = temporal.TemporalUpsample(2, 3, init_scheme="linear")
  c = x[:, :4]
  z = np.asarray(up.apply(up.init(jax.random.key(3), c), c))
  ce = np.asarray(c, np.float64)
  nxt = np.concatenate([ce[:, 1:], ce[:, -1:]], axis=1)
  prev = np.concatenate([ce[:, :1], ce[:, :-1]], axis=1)
  np.testing.assert_allclose(z[:, 0::2], 0.75 * ce + 0.25 * prev, atol=1e-6)
  np.testing.assert_allclose(z[:, 1::2], 0.75 * ce + 0.25 * nxt, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("impl", ["conv", "matmul"])
def test_linear_resamplers_keep_a_static_clip(factor, impl):
  kernel = tiny_unet_config().temporal_resample_kernel_for(factor)
  frame = jax.random.normal(jax.random.key(4), (2, 1, 3, 2, 5))
  x = jnp.repeat(frame, 3 * factor, axis=1)
  down = temporal.TemporalDownsample(factor, kernel, impl, init_scheme="linear")
  y = down.apply(down.init(jax.random.key(5), x), x)
  np.testing.assert_allclose(np.asarray(y), np.asarray(x[:, ::factor]), atol=1e-6)
  up = temporal.TemporalUpsample(factor, kernel, impl, init_scheme="linear")
  z = up.apply(up.init(jax.random.key(6), y), y)
  np.testing.assert_allclose(np.asarray(z), np.asarray(x), atol=1e-6)


def test_edge_padding_matches_between_implementations():
  x = jax.random.normal(jax.random.key(7), (1, 7, 2, 2, 6))
  ms = {impl: temporal.TemporalConv(6, 5, stride=2, implementation=impl, padding="edge")
        for impl in ("conv", "matmul")}
  params = randomize(ms["conv"].init(jax.random.key(8), x)["params"], seed=9)
  ys = {impl: m.apply({"params": params}, x) for impl, m in ms.items()}
  np.testing.assert_allclose(np.asarray(ys["conv"]), np.asarray(ys["matmul"]), atol=1e-5)
  zero_padded = temporal.TemporalConv(6, 5, stride=2).apply({"params": params}, x)
  assert float(jnp.abs(zero_padded - ys["conv"]).max()) > 1e-3  # the ends differ


def test_bad_resampler_init_or_padding_is_named():
  x = jnp.zeros((1, 4, 2, 2, 3))
  with pytest.raises(ValueError, match="init_scheme must be one of"):
    temporal.TemporalDownsample(2, 3, init_scheme="cubic").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="padding must be one of"):
    temporal.TemporalConv(3, padding="reflect").init(jax.random.key(0), x)
