"""Text and noise level in the temporal layers (`model.temporal_text`, SPEC §2 beyond the paper).

Each option must be the identity at init (inflation stays exact), must change the output once
its zero-initialised weights move, and must then make the output depend on the caption.
"""

import flax
import flax.linen as nn
import hashlib
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import temporal
from stunet.nn.config import TEMPORAL_TEXT_OPTIONS
from stunet.nn.inflate import inflate, label_params
from stunet.nn.stunet import STUNet
from stunet.nn.t2i_unet import T2IUNet

from tests.nn.unet_testing import example_inputs, randomize, tiny_unet_config

OPTIONS = tuple(o for o in TEMPORAL_TEXT_OPTIONS if o != "none")
# Modules the options add; every one sits inside a "temporal_*" module (see test below).
NEW_MODULES = ("film", "cross_attn", "norm_cross")


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(nn.unbox(tree)), sep="/")


def _unflat(flat):
  return flax.traverse_util.unflatten_dict(flat, sep="/")


def _is_new(path: str) -> bool:
  return any(part in NEW_MODULES for part in path.split("/"))


def _abstract(model, inputs):
  return jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]


def _apply(model):
  return jax.jit(lambda p, *a: model.apply({"params": p}, *a))


def test_the_paper_setting_keeps_the_parameter_tree():
  """`none` (the default) has exactly the parameters it had before the option existed."""
  cfg = tiny_unet_config()
  assert cfg.temporal_text == "none"
  flat = _flat(_abstract(STUNet(cfg), example_inputs(1, 8, 8, 8)))
  lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(flat.items()))
  # Recorded from the code before `model.temporal_text` was added.
  assert len(flat) == 472
  assert sum(int(np.prod(v.shape)) for v in flat.values()) == 552915
  assert hashlib.sha256(lines.encode()).hexdigest() == (
      "405c8ef181dd773d78e441b856aa7e34a522f32ce24aebef63852b425d13a274")


@pytest.mark.parametrize("option", OPTIONS)
def test_options_only_add_temporal_parameters(option):
  inputs = example_inputs(1, 8, 8, 8)
  base = _flat(_abstract(STUNet(tiny_unet_config()), inputs))
  params = _abstract(STUNet(tiny_unet_config(temporal_text=option)), inputs)
  flat = _flat(params)
  added = set(flat) - set(base)
  assert set(base) <= set(flat)
  assert added and all(_is_new(k) for k in added)
  assert any("/film/" in k for k in added) == ("film" in option)
  assert any("/cross_attn/" in k for k in added) == ("cross_attention" in option)
  # Labelled temporal (trained in the video stage, absent from the T2I model) and named for
  # sharding like every other parameter.
  labels = _flat(label_params(params))
  assert all(labels[k] == "temporal" for k in added)
  boxed = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  assert all(isinstance(boxed[k], nn.Partitioned) and len(boxed[k].names) == boxed[k].value.ndim
             for k in added)


@pytest.fixture(scope="module")
def unit_factor_setup():
  """Unit temporal factors, temporal attention at two levels: a random T2I model's output per
  frame, and the `none` STUNet's output with random (trained-like) temporal layers."""
  overrides = dict(temporal_factors=(1, 1), temporal_attention_levels=(-1, 1))
  x, nc, text, mask = inputs = example_inputs(2, 4, 8, 8)
  t2i = T2IUNet(tiny_unet_config(**overrides))
  t2i_params = randomize(_abstract(t2i, (x[:, 0], nc, text, mask)))
  b, t = x.shape[:2]
  ref = _apply(t2i)(t2i_params, x.reshape((b * t,) + x.shape[2:]), jnp.repeat(nc, t),
                    jnp.repeat(text, t, axis=0), jnp.repeat(mask, t, axis=0))
  none_model = STUNet(tiny_unet_config(**overrides))
  trained = _flat(randomize(_abstract(none_model, inputs), seed=2))
  trained_out = _apply(none_model)(_unflat(trained), *inputs)
  # Real initial values of every option's modules from one compiled init: the model with both
  # pathways holds each option's modules, and flax derives a module's initial values from its
  # path alone, so an option's own init equals this one restricted to its tree (checked on
  # one block in `test_block_level_identity_at_init`).
  both = STUNet(tiny_unet_config(temporal_text="film+cross_attention", **overrides))
  fresh = _flat(jax.jit(both.init)(jax.random.key(1), *inputs)["params"])
  return overrides, inputs, t2i_params, ref.reshape(x.shape), trained, trained_out, fresh


@pytest.mark.parametrize("option", OPTIONS)
def test_identity_at_init(unit_factor_setup, option):
  """SPEC §2: every option is still the T2I model per frame right after inflation, and with
  trained (random) temporal layers and the new weights as initialised the output is bitwise
  the `none` model's (switching the option on keeps a trained video model exact)."""
  overrides, inputs, t2i_params, ref, trained, trained_out, both = unit_factor_setup
  model = STUNet(tiny_unet_config(temporal_text=option, **overrides))
  apply = _apply(model)
  abstract = _flat(_abstract(model, inputs))
  assert set(abstract) <= set(both)
  fresh = _unflat({k: both[k] for k in abstract})
  jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), _unflat(abstract), fresh)
  out = apply(inflate(t2i_params, fresh), *inputs)
  assert float(jnp.abs(ref).max()) > 1e-2
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)
  params = _unflat({k: trained.get(k, v) for k, v in _flat(fresh).items()})
  np.testing.assert_array_equal(np.asarray(apply(params, *inputs)), np.asarray(trained_out))


@pytest.fixture(scope="module")
def caption_blind_setup():
  """Spatial layers without cross-attention: only the temporal pathway can read the caption."""
  overrides = dict(cross_attention=False)
  x, nc, text, mask = example_inputs(2, 8, 8, 8)
  other_text = text + jax.random.normal(jax.random.key(9), text.shape)
  none_model = STUNet(tiny_unet_config(**overrides))
  shared = _flat(randomize(_abstract(none_model, (x, nc, text, mask)), seed=4))
  apply = _apply(none_model)
  base, base_other = (apply(_unflat(shared), x, nc, t, mask) for t in (text, other_text))
  np.testing.assert_array_equal(np.asarray(base), np.asarray(base_other))  # caption-blind
  return overrides, (x, nc, text, mask), other_text, shared, base


@pytest.mark.parametrize("option", OPTIONS)
def test_perturbed_pathway_changes_the_output_and_reads_the_caption(caption_blind_setup,
                                                                    option):
  overrides, (x, nc, text, mask), other_text, shared, base = caption_blind_setup
  model = STUNet(tiny_unet_config(temporal_text=option, **overrides))
  flat = _flat(randomize(_abstract(model, (x, nc, text, mask)), seed=5))
  params = _unflat({k: shared.get(k, v) for k, v in flat.items()})  # only new weights differ
  apply = _apply(model)
  out = apply(params, x, nc, text, mask)
  assert float(jnp.abs(out - base).max()) > 1e-3  # the pathway acts once its weights move
  out_other = apply(params, x, nc, other_text, mask)
  assert float(jnp.abs(out_other - out).max()) > 1e-3  # ... and it reads the caption
  # Padding tokens (mask False; example 1 has 3 real tokens) are not read.
  padded = apply(params, x, nc, text.at[1, 3:].add(5.0), mask)
  np.testing.assert_array_equal(np.asarray(padded), np.asarray(out))


def test_masked_mean_pools_real_tokens_only():
  text = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2)
  mask = jnp.array([[True, True, False], [False, False, False]])
  pooled = temporal.masked_mean(text, mask)
  np.testing.assert_array_equal(np.asarray(pooled), np.array([[1.0, 2.0], [0.0, 0.0]]))


@pytest.mark.parametrize("option", OPTIONS)
def test_block_level_identity_at_init(option):
  """The blocks alone: zero-initialised FiLM / cross-attention leave their input unchanged."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 3, 2, 8))
  emb = jax.random.normal(jax.random.key(1), (2, 16))
  _, _, text, mask = example_inputs(2)
  if "film" in option:
    m = temporal.TemporalConvBlock(norm_groups=4, film=True)
    variables = m.init(jax.random.key(2), x, emb, text, mask)
    np.testing.assert_array_equal(np.asarray(m.apply(variables, x, emb, text, mask)),
                                  np.asarray(x))
  if "cross_attention" in option:
    m = temporal.TemporalAttentionBlock(num_heads=2, cross_attention=True)
    variables = m.init(jax.random.key(3), x, text, mask)
    np.testing.assert_array_equal(np.asarray(m.apply(variables, x, text, mask)), np.asarray(x))
    # Adding the cross-attention leaves the other modules' initial values as they were (what
    # `unit_factor_setup`'s one init for every option relies on).
    plain = _flat(temporal.TemporalAttentionBlock(num_heads=2).init(jax.random.key(3), x))
    added = _flat(variables)
    assert set(plain) < set(added)
    for k, v in plain.items():
      np.testing.assert_array_equal(np.asarray(v), np.asarray(added[k]), err_msg=k)


def test_bad_option_names_the_field():
  with pytest.raises(ValueError, match=r"config.model.temporal_text='text'.*must be one of"):
    tiny_unet_config(temporal_text="text")
  with pytest.raises(ValueError, match=r"config.model.temporal_text='film'.*temporal_conv"):
    tiny_unet_config(temporal_text="film", temporal_conv=False)
  with pytest.raises(ValueError, match=r"temporal_text='cross_attention'.*temporal_attention"):
    tiny_unet_config(temporal_text="cross_attention", temporal_attention_levels=(),
                     temporal_attention_mid=False)
