"""Temporal layers are exact identities / nearest-neighbour resamplers at init (SPEC §2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import temporal

from tests.nn.unet_testing import randomize


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
