"""Tests for the small transformer text encoder, the factory and the cached frozen encoder."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.text import byte_tokenizer
from stunet.text import config as config_lib
from stunet.text import factory
from stunet.text import frozen_encoder
from stunet.text import interface
from tests.text.float_tolerance import encoder_reduction_length
from tests.text.float_tolerance import float32_atol


def _config(**overrides):
  config = config_lib.text_config()
  config.update(dict(max_length=12, width=16, depth=2, heads=2), **overrides)
  return config


def _atol(reference):
  """float32 tolerance of `_config()`'s encoder outputs (tests/text/float_tolerance.py)."""
  c = _config()
  return float32_atol(reference, encoder_reduction_length(
      layers=c.depth, width=c.width, heads=c.heads, head_dim=c.width // c.heads,
      mlp=c.mlp_ratio * c.width, length=c.max_length))


@pytest.fixture(scope="module")
def encoder():
  tokenizer, module = factory.make_text_encoder(_config())
  ids, mask = tokenizer(["init"])
  variables = module.init(jax.random.key(0), ids, mask)
  apply = jax.jit(lambda v, ids, mask: module.apply(v, ids, mask))
  return tokenizer, module, variables, apply


def test_output_shape_and_zero_padding(encoder):
  tokenizer, _, variables, apply = encoder
  ids, mask = tokenizer(["a red fox", ""])
  emb = np.asarray(apply(variables, ids, mask))
  assert emb.shape == (2, 12, 16)
  np.testing.assert_array_equal(emb[~mask], 0.0)
  assert np.all(np.abs(emb[mask]).sum(-1) > 0)


def test_padded_tokens_do_not_change_real_outputs(encoder):
  tokenizer, _, variables, apply = encoder
  ids, mask = tokenizer(["a red fox"])
  garbage = np.where(mask, ids, np.random.default_rng(0).integers(2, 258, ids.shape))
  ref = apply(variables, ids, mask)
  np.testing.assert_allclose(ref, apply(variables, garbage, mask), atol=_atol(ref), rtol=0)
  # ...while changing a real token does change them.
  changed = ids.copy()
  changed[0, 0] += 1
  assert float(jnp.abs(apply(variables, changed, mask) - apply(variables, ids, mask)).max()) > 1e-3


def test_params_carry_logical_axes(encoder):
  _, _, variables, _ = encoder
  names = {"/".join(k.key for k in path): leaf.names
           for path, leaf in jax.tree_util.tree_flatten_with_path(
               variables, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))[0]}
  assert names["params/token_embedding/embedding"] == ("vocab", "embed")
  assert names["params/layers_0/attention/query/kernel"] == ("embed", "heads")
  assert names["params/layers_0/attention/out/kernel"] == ("heads", "embed")
  assert names["params/layers_1/mlp_in/kernel"] == ("embed", "mlp")
  assert names["params/layers_1/mlp_out/kernel"] == ("mlp", "embed")
  assert names["params/final_norm/scale"] == ("norm",)
  assert all(isinstance(n, tuple) for n in names.values())


def test_encoder_rejects_bad_shapes(encoder):
  _, module, variables, _ = encoder
  with pytest.raises(ValueError, match="text.max_length"):
    module.apply(variables, jnp.zeros((1, 13), jnp.int32), jnp.ones((1, 13), bool))
  with pytest.raises(ValueError, match="ids"):
    module.apply(variables, jnp.zeros((1, 12), jnp.int32), jnp.ones((1, 11), bool))


def test_factory_and_config_errors():
  with pytest.raises(ValueError, match="text.kind"):
    factory.make_text_encoder(_config(kind="clip"))
  with pytest.raises(ValueError, match=r"text.width \(16\) must be divisible by text.heads"):
    factory.make_text_encoder(_config(heads=3))
  with pytest.raises(ValueError, match="text.depth"):
    factory.make_text_encoder(_config(depth=0))
  tokenizer, module = factory.make_text_encoder(_config())
  assert isinstance(tokenizer, byte_tokenizer.ByteTokenizer)
  assert tokenizer.max_length == module.max_length == 12


@pytest.fixture(scope="module")
def frozen(encoder):
  tokenizer, module, variables, _ = encoder
  return frozen_encoder.FrozenTextEncoder(tokenizer, module, variables, batch_size=4,
                                          cache_size=5)


def test_frozen_encoder_matches_the_module(encoder, frozen):
  tokenizer, _, variables, apply = encoder
  assert isinstance(frozen, interface.TextEncoder)
  assert frozen.width == 16 and frozen.max_length == 12
  texts = ["one", "two", "three", "four", "five", "six"]  # more than one batch
  emb, mask = frozen.encode(texts)
  ids, ref_mask = tokenizer(texts)
  np.testing.assert_array_equal(mask, ref_mask)
  ref = apply(variables, ids, ref_mask)
  np.testing.assert_allclose(emb, ref, atol=_atol(ref), rtol=0)
  assert emb.dtype == np.float32


def test_cache_returns_identical_arrays_and_evicts_lru(frozen):
  frozen.encode(["warm"])
  hits, misses = frozen.hits, frozen.misses
  first, first_mask = frozen.encode(["cat", "dog", "cat"])
  assert frozen.misses - misses == 2 and frozen.hits - hits == 0
  np.testing.assert_array_equal(first[0], first[2])
  again, again_mask = frozen.encode(["dog", "cat"])
  assert frozen.hits - hits == 2
  np.testing.assert_array_equal(again[0], first[1])
  np.testing.assert_array_equal(again[1], first[0])
  np.testing.assert_array_equal(again_mask, first_mask[[1, 0]])
  # Callers get their own arrays: writing to them cannot alter the cache.
  again[...] = 7.0
  np.testing.assert_array_equal(frozen.encode(["cat"])[0][0], first[0])
  # cache_size 5: six new captions push "cat" out, so it is encoded again (same values).
  frozen.precompute([f"caption {i}" for i in range(6)])
  assert len(frozen) == 5
  misses = frozen.misses
  np.testing.assert_array_equal(frozen.encode(["cat"])[0][0], first[0])
  assert frozen.misses == misses + 1


def test_precompute_counts_new_captions_only(encoder):
  tokenizer, module, variables, _ = encoder
  enc = frozen_encoder.FrozenTextEncoder(tokenizer, module, variables, batch_size=4)
  assert enc.precompute(["a", "b", "a", "c"]) == 3
  assert enc.precompute(["b", "c", "d"]) == 1
  assert len(enc) == 4
  emb, mask = enc.encode([])
  assert emb.shape == (0, 12, 16) and mask.shape == (0, 12)
