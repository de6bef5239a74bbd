"""Tests for the byte-level tokenizer."""

import numpy as np
import pytest

from stunet.text import byte_tokenizer
from stunet.text import interface


def test_layout_of_ids_and_mask():
  tok = byte_tokenizer.ByteTokenizer(6)
  ids, mask = tok(["ab", ""])
  np.testing.assert_array_equal(ids, [[ord("a") + 2, ord("b") + 2, 1, 0, 0, 0],
                                      [1, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
  assert ids.dtype == np.int32 and mask.dtype == bool
  assert isinstance(tok, interface.Tokenizer)


def test_unicode_round_trip():
  texts = ["a cat on a skateboard", "Überraschung: ça marche", "日本語のキャプション", "🐱🛹 emoji",
           ""]
  tok = byte_tokenizer.ByteTokenizer(64, on_truncation="error")
  ids, mask = tok(texts)
  assert tok.decode(ids) == texts
  # "日" is three UTF-8 bytes, so the CJK caption has 3 tokens per character plus EOS.
  assert mask[2].sum() == 3 * len(texts[2]) + 1
  assert ids.max() < byte_tokenizer.VOCAB_SIZE


def test_truncation_cuts_at_a_character_boundary_and_keeps_eos():
  tok = byte_tokenizer.ByteTokenizer(5, on_truncation="silent")
  # "é" is two bytes: "aé" + "é" would split the second "é" at 4 content bytes.
  ids, mask, truncated = tok.tokenize(["aéé", "abcd", "abcde"])
  np.testing.assert_array_equal(truncated, [True, False, True])
  assert tok.decode(ids) == ["aé", "abcd", "abcd"]
  np.testing.assert_array_equal(ids[:, -1], [0, 1, 1])  # EOS survives truncation
  np.testing.assert_array_equal(mask.sum(1), [4, 5, 5])


def test_truncation_modes(caplog):
  long = "x" * 20
  with pytest.raises(ValueError, match=r"texts\[1\].*text.max_length"):
    byte_tokenizer.ByteTokenizer(8, "error")(["ok", long])
  with caplog.at_level("WARNING"):
    ids, _ = byte_tokenizer.ByteTokenizer(8, "warn")(["ok", long, long])
  assert "truncated 2 of 3" in caplog.text
  assert ids.shape == (3, 8)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="text.max_length"):
    byte_tokenizer.ByteTokenizer(0)
  with pytest.raises(ValueError, match="text.on_truncation"):
    byte_tokenizer.ByteTokenizer(8, "drop")
  with pytest.raises(TypeError, match="sequence of strings"):
    byte_tokenizer.ByteTokenizer(8)("a caption")
  with pytest.raises(TypeError, match=r"texts\[1\]"):
    byte_tokenizer.ByteTokenizer(8)(["a", 3])
