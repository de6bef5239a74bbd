"""Byte-level tokenizer: UTF-8 bytes as tokens, no vocabulary file (SPEC §3).

The default text path of the embedded dataset trains its own small encoder, so it does not
need a learned vocabulary: every caption in every language is a byte string. Ids: 0 = padding,
1 = end of sequence, ``2 + b`` for byte ``b`` (vocabulary size 258).

Each row is ``bytes + [EOS]`` followed by padding up to ``max_length``; the mask is True on
the bytes and the EOS, so even the empty caption has one valid position. Captions longer than
``max_length - 1`` bytes are truncated explicitly: at a character boundary (no half UTF-8
characters), keeping the EOS, and reported according to ``on_truncation``.
"""

from __future__ import annotations

from typing import Callable, Sequence

from absl import logging
import numpy as np

PAD_ID = 0
EOS_ID = 1
BYTE_OFFSET = 2
VOCAB_SIZE = BYTE_OFFSET + 256
TRUNCATION_MODES = ("warn", "error", "silent")


def _truncate_utf8(data: bytes, limit: int) -> bytes:
  """Longest prefix of ``data`` with at most ``limit`` bytes that ends on a character."""
  if len(data) <= limit:
    return data
  cut = limit
  # UTF-8 continuation bytes look like 0b10xxxxxx; back up to the start of that character.
  while cut > 0 and (data[cut] & 0xC0) == 0x80:
    cut -= 1
  return data[:cut]


def report_truncation(texts: Sequence[str], truncated: np.ndarray, on_truncation: str,
                      max_length: int, tokenizer: str, unit: str,
                      length: Callable[[str], int]) -> None:
  """Raise ('error') or log ('warn') the captions a tokenizer cut to ``max_length - 1``
  ``unit`` (EOS kept); ``length(text)`` counts a caption's units for the error message."""
  if not truncated.any() or on_truncation == "silent":
    return
  rows = np.flatnonzero(truncated)
  if on_truncation == "error":
    first = rows[0]
    raise ValueError(
        f"texts[{first}] has {length(texts[first])} {unit}, more than text.max_length - 1 = "
        f"{max_length - 1} ({len(rows)} caption(s) too long): {texts[first][:60]!r}")
  logging.warning("%s truncated %d of %d caption(s) to %d %s (text.max_length)", tokenizer,
                  len(rows), len(texts), max_length - 1, unit)


class ByteTokenizer:
  """Implements ``stunet.text.interface.Tokenizer`` over UTF-8 bytes."""

  vocab_size = VOCAB_SIZE
  pad_id = PAD_ID
  eos_id = EOS_ID

  def __init__(self, max_length: int, on_truncation: str = "warn"):
    """
    Args:
      max_length: tokens per row, EOS included (>= 1).
      on_truncation: 'warn' (log how many captions were cut), 'error' (raise ValueError
        naming the caption) or 'silent'.
    """
    if not isinstance(max_length, int) or max_length < 1:
      raise ValueError(f"text.max_length must be a positive integer, got {max_length!r}")
    if on_truncation not in TRUNCATION_MODES:
      raise ValueError(
          f"text.on_truncation must be one of {TRUNCATION_MODES}, got {on_truncation!r}")
    self.max_length = max_length
    self.on_truncation = on_truncation

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
      data = text.encode("utf-8")
      kept = _truncate_utf8(data, self.max_length - 1)
      truncated[row] = len(kept) < len(data)
      n = len(kept)
      ids[row, :n] = np.frombuffer(kept, np.uint8).astype(np.int32) + BYTE_OFFSET
      ids[row, n] = EOS_ID
      mask[row, :n + 1] = True
    return ids, mask, truncated

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ids, mask, truncated = self.tokenize(texts)
    report_truncation(texts, truncated, self.on_truncation, self.max_length, "ByteTokenizer",
                      "UTF-8 bytes", lambda text: len(text.encode("utf-8")))
    return ids, mask

  def decode(self, ids: np.ndarray) -> list[str]:
    """Inverse of ``__call__`` for ``ids [b, L]``: bytes up to the first EOS or padding."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
      raise ValueError(f"decode expects ids [b, L], got shape {ids.shape}")
    texts = []
    for row in ids:
      stop = np.flatnonzero(row < BYTE_OFFSET)
      content = row[:stop[0]] if stop.size else row
      texts.append(bytes((content - BYTE_OFFSET).astype(np.uint8).tolist()).decode("utf-8"))
    return texts
