"""The text-conditioning contract shared by every tokenizer and encoder (SPEC §3).

A caption reaches the U-Net in two steps:

1. a host-side **tokenizer** turns strings into fixed-length integer ids and a padding mask
   (``numpy``, so it can run inside the data pipeline), truncating explicitly at
   ``max_length``;
2. a Flax **encoder module** maps ``(ids, mask)`` to token embeddings ``[b, L, d]``.

The U-Net only sees ``(embeddings, mask)``. A frozen encoder (T5, or the small encoder after
the T2I stage) can therefore be replaced by cached embeddings without touching the model.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Tokenizer(Protocol):
  """Strings -> ``(ids int32 [b, L], mask bool [b, L])`` with ``L == max_length``."""

  max_length: int

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ...


@runtime_checkable
class TextEncoder(Protocol):
  """Texts -> ``(embeddings float [b, L, d], mask bool [b, L])``; the U-Net's text input."""

  max_length: int
  width: int

  def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ...
