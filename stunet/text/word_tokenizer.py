"""Hashed word tokenizer: one token per word, no vocabulary file (SPEC §3).

The byte tokenizer makes a small encoder learn to spell before it can read "red" or "square";
at the quick start's budget (a one-layer, 32-wide encoder trained for ~1000 steps) that is what
limits text following. This tokenizer hands the encoder whole words instead, still without a
learned vocabulary: a caption is lower-cased and split into words (runs of letters and digits)
and punctuation marks, and each piece maps to a bucket of a stable hash (CRC-32, the same on
every host and Python run, unlike ``hash``). Unseen words still get an id, distinct words
rarely share one (about ``n^2 / (2 * buckets)`` collisions for ``n`` distinct words).

Ids: 0 = padding, 1 = end of sequence, ``2 + crc32(word) % buckets`` for a word
(``vocab_size = 2 + buckets``). Rows are ``words + [EOS]`` padded to ``max_length``; the mask
is True on the words and the EOS. Captions with more than ``max_length - 1`` pieces are cut to
the first ``max_length - 1`` and reported according to ``on_truncation``, as for bytes.
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

from stunet.text import byte_tokenizer

PAD_ID = 0
EOS_ID = 1
WORD_OFFSET = 2
TRUNCATION_MODES = byte_tokenizer.TRUNCATION_MODES
_PIECES = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[str]:
  """Lower-cased words (letters and digits) and punctuation marks of ``text``, in order."""
  return _PIECES.findall(text.lower())


class HashedWordTokenizer:
  """Implements ``stunet.text.interface.Tokenizer`` over hashed words."""

  pad_id = PAD_ID
  eos_id = EOS_ID

  def __init__(self, max_length: int, buckets: int, on_truncation: str = "warn"):
    """
    Args:
      max_length: tokens per row, EOS included (>= 1).
      buckets: number of word ids (>= 1); the vocabulary is ``buckets + 2``.
      on_truncation: 'warn' (log how many captions were cut), 'error' (raise ValueError
        naming the caption) or 'silent'.
    """
    if not isinstance(max_length, int) or max_length < 1:
      raise ValueError(f"text.max_length must be a positive integer, got {max_length!r}")
    if not isinstance(buckets, int) or buckets < 1:
      raise ValueError(f"text.word_buckets must be a positive integer, got {buckets!r}")
    if on_truncation not in TRUNCATION_MODES:
      raise ValueError(
          f"text.on_truncation must be one of {TRUNCATION_MODES}, got {on_truncation!r}")
    self.max_length = max_length
    self.buckets = buckets
    self.vocab_size = WORD_OFFSET + buckets
    self.on_truncation = on_truncation

  def word_id(self, word: str) -> int:
    """The id of one (already lower-cased) word."""
    return WORD_OFFSET + zlib.crc32(word.encode("utf-8")) % self.buckets

  def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids int32 [b, L], mask bool [b, L], truncated bool [b])``; never warns or raises."""
    if isinstance(texts, str):
      raise TypeError("Pass a sequence of strings, not a single string.")
    ids = np.full((len(texts), self.max_length), PAD_ID, np.int32)
    mask = np.zeros((len(texts), self.max_length), bool)
    truncated = np.zeros((len(texts),), bool)
    for row, text in enumerate(texts):
      if not isinstance(text, str):
        raise TypeError(f"texts[{row}] must be a str, got {type(text).__name__}")
      words = split_words(text)
      kept = words[:self.max_length - 1]
      truncated[row] = len(kept) < len(words)
      ids[row, :len(kept)] = [self.word_id(w) for w in kept]
      ids[row, len(kept)] = EOS_ID
      mask[row, :len(kept) + 1] = True
    return ids, mask, truncated

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ids, mask, truncated = self.tokenize(texts)
    byte_tokenizer.report_truncation(texts, truncated, self.on_truncation, self.max_length,
                                     "HashedWordTokenizer", "words",
                                     lambda text: len(split_words(text)))
    return ids, mask
