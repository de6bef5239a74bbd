"""Tests for the spatial weight interpolation of stylized generation (SPEC §5)."""

import flax
import flax.linen as nn
import jax
import numpy as np
import pytest

from stunet.conditioning import stylize
from stunet.nn import inflate
from stunet.nn.stunet import STUNet
from stunet.nn.t2i_unet import T2IUNet
from tests.nn.unet_testing import example_inputs, tiny_unet_config


@pytest.fixture(scope="module")
def trees():
  """Random (boxed) STUNet params and a random style T2I tree, built from shapes only."""
  config = tiny_unet_config()
  x, noise_cond, text, mask = example_inputs(b=1, t=4, h=8, w=8)
  key = jax.random.key(0)
  video_shapes = jax.eval_shape(lambda: STUNet(config).init(key, x, noise_cond, text, mask))
  t2i_shapes = jax.eval_shape(lambda: T2IUNet(config).init(key, x, noise_cond, text, mask))
  rng = np.random.default_rng(0)
  # Random values everywhere (zero-initialised leaves would hide a mixed-up path).
  fill = lambda s: rng.normal(size=s.shape).astype(s.dtype)
  base = jax.tree.map(lambda box: box.replace_boxed(fill(box.value)), video_shapes["params"],
                      is_leaf=lambda l: isinstance(l, nn.Partitioned))
  style = jax.tree.map(fill, nn.unbox(t2i_shapes["params"]))
  return base, style


def _flat(tree):
  return flax.traverse_util.flatten_dict(nn.unbox(tree))


def _labels(tree):
  return flax.traverse_util.flatten_dict(inflate.label_params(tree))


def test_alpha_zero_is_the_base_bit_for_bit(trees):
  base, style = trees
  out = stylize.interpolate_spatial(base, style, 0.0)
  assert jax.tree.structure(out) == jax.tree.structure(base)
  flat_out = _flat(out)
  for k, v in _flat(base).items():
    np.testing.assert_array_equal(flat_out[k], v)


def test_alpha_one_is_style_spatial_and_base_temporal(trees):
  base, style = trees
  out, labels, s = _flat(stylize.interpolate_spatial(base, style, 1.0)), _labels(base), _flat(style)
  counts = {"spatial": 0, "temporal": 0}
  for k, v in _flat(base).items():
    counts[labels[k]] += 1
    np.testing.assert_array_equal(out[k], s[k] if labels[k] == "spatial" else v)
  assert counts["spatial"] > 10 and counts["temporal"] > 10


def test_alpha_blends_spatial_only(trees):
  base, style = trees
  out, labels, s = _flat(stylize.interpolate_spatial(base, style, 0.7)), _labels(base), _flat(style)
  for k, v in _flat(base).items():
    expected = 0.7 * s[k] + 0.3 * v if labels[k] == "spatial" else v
    np.testing.assert_allclose(out[k], expected, rtol=1e-6, atol=1e-7)
  # A full STUNet as the style tree works too; its temporal leaves are ignored.
  again = stylize.interpolate_spatial(base, stylize.interpolate_spatial(base, style, 1.0), 0.7)
  for k, v in _flat(again).items():
    np.testing.assert_allclose(v, out[k], rtol=1e-6, atol=1e-7)


def test_errors_name_alpha_and_paths(trees):
  base, style = trees
  for alpha in (-0.1, 1.01, "0.5"):
    with pytest.raises(ValueError, match=r"style alpha must be a number in \[0, 1\]"):
      stylize.interpolate_spatial(base, style, alpha)
  flat = flax.traverse_util.flatten_dict(style)
  del flat[("conv_in", "bias")]
  flat[("extra", "kernel")] = np.zeros(3)
  with pytest.raises(ValueError, match=r"Missing in style: \[conv_in/bias\]; not in base: "
                                       r"\[extra/kernel\]"):
    stylize.interpolate_spatial(base, flax.traverse_util.unflatten_dict(flat), 0.5)
  flat = flax.traverse_util.flatten_dict(style)
  flat[("conv_out", "kernel")] = np.zeros((1, 1, 1, 1), np.float32)
  with pytest.raises(ValueError, match="shape mismatch at conv_out/kernel"):
    stylize.interpolate_spatial(base, flax.traverse_util.unflatten_dict(flat), 0.5)
