"""T5's sentencepiece tokenizer as a ``stunet.text.interface.Tokenizer`` (SPEC §3).

Reproduces HF transformers' ``T5Tokenizer`` on a local ``spiece.model``, as used with
``padding='max_length', truncation=True``:

- special tokens written literally in a caption (``<pad>``, ``</s>``, ``<unk>``,
  ``<extra_id_N>``) map to their ids, and the text between them is encoded piece by piece
  (each segment gets sentencepiece's leading-space marker, as in HF);
- ``</s>`` is appended; sequences longer than ``max_length`` keep their first
  ``max_length - 1`` tokens and still end in ``</s>``;
- padding uses id 0 (``<pad>``) and the mask is True exactly on real tokens and ``</s>``.

The ``<extra_id_N>`` sentinels live after the sentencepiece vocabulary in reverse order
(``<extra_id_0>`` is the last id), which is how T5 checkpoints number them.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np

PAD_ID = 0


def _import_sentencepiece():
  try:
    import sentencepiece  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("The T5 tokenizer needs the `sentencepiece` package: "
                      "pip install 'stunet[parity]' (or just sentencepiece).") from e
  return sentencepiece


class SentencePieceTokenizer:
  """Strings -> ``(ids int32 [b, max_length], mask bool [b, max_length])`` like T5Tokenizer."""

  def __init__(self, model_path: str, max_length: int, extra_ids: int = 100):
    if not isinstance(max_length, int) or max_length < 1:
      raise ValueError(f"max_length must be a positive integer, got {max_length!r}.")
    if extra_ids < 0:
      raise ValueError(f"extra_ids must be >= 0, got {extra_ids!r}.")
    if os.path.isdir(model_path):
      model_path = os.path.join(model_path, "spiece.model")
    if not os.path.isfile(model_path):
      raise FileNotFoundError(f"No sentencepiece model at {model_path!r} (expected a "
                              "spiece.model file or a directory containing one).")
    spm = _import_sentencepiece()
    with open(model_path, "rb") as f:
      self._sp = spm.SentencePieceProcessor(model_proto=f.read())
    self.max_length = max_length
    self.model_path = model_path
    self._check_t5_layout()
    size = self._sp.get_piece_size()
    self.eos_id = self._sp.eos_id()
    self.vocab_size = size + extra_ids
    self.special_ids = {"<pad>": PAD_ID, "</s>": self.eos_id, "<unk>": self._sp.unk_id()}
    self.special_ids.update({f"<extra_id_{i}>": size + extra_ids - 1 - i
                             for i in range(extra_ids)})
    # Longest first so that e.g. <extra_id_10> is not split as <extra_id_1> + "0>".
    alternatives = sorted(self.special_ids, key=len, reverse=True)
    self._special_pattern = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")

  def _check_t5_layout(self) -> None:
    """T5 models assume <pad>=0, </s>=1, <unk>=2; a model trained otherwise would misalign."""
    expected = {"<pad>": PAD_ID, "</s>": 1, "<unk>": 2}
    actual = {piece: self._sp.piece_to_id(piece) for piece in expected}
    if actual != expected or self._sp.eos_id() != 1 or self._sp.unk_id() != 2:
      raise ValueError(f"{self.model_path}: not a T5 sentencepiece model; expected special "
                       f"pieces {expected}, found {actual}.")

  def encode_unpadded(self, text: str) -> list[int]:
    """Token ids of one text followed by ``</s>``, neither truncated nor padded."""
    if not isinstance(text, str):
      raise TypeError(f"Texts must be str, got {type(text).__name__}: {text!r}.")
    ids: list[int] = []
    for segment in self._special_pattern.split(text):
      if segment in self.special_ids:
        ids.append(self.special_ids[segment])
      elif segment:
        ids.extend(self._sp.encode(segment))
    return ids + [self.eos_id]

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(texts, str):
      raise TypeError("Pass a sequence of strings, not a single string.")
    ids = np.full((len(texts), self.max_length), PAD_ID, dtype=np.int32)
    mask = np.zeros((len(texts), self.max_length), dtype=bool)
    for row, text in enumerate(texts):
      tokens = self.encode_unpadded(text)
      if len(tokens) > self.max_length:
        # HF truncates the text and then appends </s>, so the EOS always survives.
        tokens = tokens[:self.max_length - 1] + [self.eos_id]
      ids[row, :len(tokens)] = tokens
      mask[row, :len(tokens)] = True
    return ids, mask
