"""Tests for the hashed word tokenizer and the 'words_transformer' text kind."""

import zlib

import jax
import numpy as np
import pytest

from stunet.text import config as text_config_lib
from stunet.text import factory
from stunet.text import interface
from stunet.text import word_tokenizer


def test_split_words_lowercases_and_keeps_punctuation():
  assert word_tokenizer.split_words("A big RED Circle, moving left!") == [
      "a", "big", "red", "circle", ",", "moving", "left", "!"]
  assert word_tokenizer.split_words("  ") == []
  assert word_tokenizer.split_words("Überraschung ça 3d") == ["überraschung", "ça", "3d"]


def test_layout_ids_are_crc32_buckets():
  tok = word_tokenizer.HashedWordTokenizer(5, buckets=100)
  ids, mask = tok(["Red square", ""])
  expected = [2 + zlib.crc32(w.encode()) % 100 for w in ("red", "square")]
  np.testing.assert_array_equal(ids, [expected + [1, 0, 0], [1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
  assert ids.dtype == np.int32 and mask.dtype == bool
  assert tok.vocab_size == 102 and ids.max() < tok.vocab_size
  assert isinstance(tok, interface.Tokenizer)


def test_same_word_same_id_whatever_case_or_position():
  tok = word_tokenizer.HashedWordTokenizer(8, buckets=4096)
  ids, _ = tok(["red ball", "a RED ball"])
  assert ids[0, 0] == ids[1, 1] and ids[0, 1] == ids[1, 2]
  assert ids[0, 0] != ids[0, 1]


def test_shapes_video_vocabulary_has_no_collisions_at_the_default_buckets():
  from stunet.data import captions, shapes_scene  # pylint: disable=g-import-not-at-top
  words = set(shapes_scene.COLOUR_NAMES) | {"a", "an", ","}
  for joiner in captions.JOINERS:
    words.update(word_tokenizer.split_words(joiner))
  for table in (captions.SHAPE_WORDS, captions.SIZE_WORDS, captions.SPEED_WORDS):
    for synonyms in table.values():
      words.update(synonyms)
  for templates in captions.MOTION_TEMPLATES.values():
    for t in templates:
      words.update(word_tokenizer.split_words(t.replace("{speed}", "")))
  tok = word_tokenizer.HashedWordTokenizer(8, text_config_lib.text_config().word_buckets)
  ids = {tok.word_id(w) for w in words}
  assert len(ids) == len(words)


def test_truncation_keeps_eos_and_reports():
  tok = word_tokenizer.HashedWordTokenizer(3, buckets=50, on_truncation="silent")
  ids, mask, truncated = tok.tokenize(["one two three", "one two"])
  np.testing.assert_array_equal(truncated, [True, False])
  np.testing.assert_array_equal(ids[:, -1], [1, 1])
  np.testing.assert_array_equal(mask.sum(1), [3, 3])
  strict = word_tokenizer.HashedWordTokenizer(3, buckets=50, on_truncation="error")
  with pytest.raises(ValueError, match="3 words, more than text.max_length - 1 = 2"):
    strict(["ok", "one two three"])


@pytest.mark.parametrize("kwargs, field", [
    (dict(max_length=0, buckets=10), "text.max_length"),
    (dict(max_length=4, buckets=0), "text.word_buckets"),
    (dict(max_length=4, buckets=10, on_truncation="drop"), "text.on_truncation"),
])
def test_bad_arguments_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    word_tokenizer.HashedWordTokenizer(**kwargs)


def test_bad_inputs():
  tok = word_tokenizer.HashedWordTokenizer(4, buckets=10)
  with pytest.raises(TypeError, match="sequence of strings"):
    tok("red")
  with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
    tok(["red", 3])


def test_config_validation_names_word_buckets():
  c = text_config_lib.text_config()
  c.kind = "words_transformer"
  c.word_buckets = 0
  with pytest.raises(ValueError, match="text.word_buckets"):
    text_config_lib.validate(c)


def test_factory_builds_a_words_encoder_that_embeds_captions():
  c = text_config_lib.text_config()
  c.update(dict(kind="words_transformer", max_length=8, word_buckets=64, width=16, depth=1,
                heads=2))
  tokenizer, module = factory.make_text_encoder(c)
  assert isinstance(tokenizer, word_tokenizer.HashedWordTokenizer)
  ids, mask = tokenizer(["a red circle", "a blue square moving left"])
  variables = jax.jit(module.init)(jax.random.key(0), ids, mask)
  out = jax.jit(lambda v: module.apply(v, ids, mask, deterministic=True))(variables)
  assert out.shape == (2, 8, 16)
  assert np.isfinite(np.asarray(out)).all()
  # The embedding table is sized by the buckets, not the byte vocabulary.
  table = jax.tree_util.tree_leaves(variables["params"]["token_embedding"])[0]
  assert table.shape[0] == 66
