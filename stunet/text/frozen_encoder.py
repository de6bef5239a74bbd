"""A frozen text encoder with an embedding cache: the ``TextEncoder`` the U-Net stages use.

Once an encoder is frozen (T5 from the start, the small byte encoder after the T2I stage) a
caption's embedding never changes, so it is computed once and kept: on the host, keyed by the
caption string, in an LRU cache that ``precompute`` can fill for a whole caption list before
training. Encoder calls use a fixed batch size, so the jitted encoder compiles once.
"""

from __future__ import annotations

import collections
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stunet.text import interface


class FrozenTextEncoder:
  """Implements ``stunet.text.interface.TextEncoder`` from a tokenizer, module and params."""

  def __init__(self, tokenizer: interface.Tokenizer, module: nn.Module, variables: Any,
               batch_size: int = 64, cache_size: int = 100_000):
    """
    Args:
      tokenizer: strings -> ``(ids, mask)`` with ``tokenizer.max_length`` tokens.
      module: Flax module called as ``apply(variables, ids, mask, deterministic=True)``.
      variables: its variables, e.g. ``{'params': ...}`` (boxed or not); never updated.
      batch_size: texts per encoder call (short calls are padded to it).
      cache_size: captions kept in the LRU cache; 0 disables caching.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if cache_size < 0:
      raise ValueError(f"text.cache_size must be >= 0, got {cache_size}")
    self.tokenizer = tokenizer
    self.max_length = tokenizer.max_length
    self.batch_size = batch_size
    self.cache_size = cache_size
    # Logical-partitioning boxes are metadata for sharding; apply wants the plain arrays.
    self._variables = variables = nn.meta.unbox(variables)
    self._apply = jax.jit(
        lambda v, ids, mask: module.apply(v, ids, mask, deterministic=True).astype(jnp.float32))
    ids = jax.ShapeDtypeStruct((batch_size, self.max_length), jnp.int32)
    mask = jax.ShapeDtypeStruct((batch_size, self.max_length), jnp.bool_)
    self.width = int(jax.eval_shape(self._apply, variables, ids, mask).shape[-1])
    self._cache: collections.OrderedDict[str, tuple[np.ndarray, np.ndarray]] = (
        collections.OrderedDict())
    self.hits = 0
    self.misses = 0

  def _run(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Encode without the cache, in fixed-size chunks."""
    embs, masks = [], []
    for start in range(0, len(texts), self.batch_size):
      chunk = list(texts[start:start + self.batch_size])
      n = len(chunk)
      ids, mask = self.tokenizer(chunk + [""] * (self.batch_size - n))
      emb = np.asarray(self._apply(self._variables, ids, mask))
      embs.append(emb[:n])
      masks.append(mask[:n])
    return np.concatenate(embs), np.concatenate(masks)

  def _remember(self, text: str, emb: np.ndarray, mask: np.ndarray) -> None:
    if self.cache_size == 0:
      return
    emb, mask = emb.copy(), mask.copy()
    emb.flags.writeable = False  # a caller mutating a returned row must not poison the cache
    mask.flags.writeable = False
    self._cache[text] = (emb, mask)
    self._cache.move_to_end(text)
    while len(self._cache) > self.cache_size:
      self._cache.popitem(last=False)

  def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings float32 [b, L, width], mask bool [b, L])`` for ``texts``."""
    if isinstance(texts, str):
      raise TypeError("Pass a sequence of strings, not a single string.")
    texts = list(texts)
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    missing = []
    for text in dict.fromkeys(texts):  # unique, in order
      if text in self._cache:
        self._cache.move_to_end(text)
        rows[text] = self._cache[text]
        self.hits += 1
      else:
        missing.append(text)
        self.misses += 1
    if missing:
      emb, mask = self._run(missing)
      for text, e, m in zip(missing, emb, mask):
        rows[text] = (e, m)
        self._remember(text, e, m)
    if not texts:
      return (np.zeros((0, self.max_length, self.width), np.float32),
              np.zeros((0, self.max_length), bool))
    return (np.stack([rows[t][0] for t in texts]), np.stack([rows[t][1] for t in texts]))

  def precompute(self, texts: Sequence[str]) -> int:
    """Fill the cache for ``texts`` (e.g. every caption of a dataset); returns how many were
    encoded now. Warns nothing: captions beyond ``cache_size`` simply evict older ones."""
    before = self.misses
    unique = list(dict.fromkeys(texts))
    for start in range(0, len(unique), self.batch_size):
      self.encode(unique[start:start + self.batch_size])
    return self.misses - before

  def __len__(self) -> int:
    return len(self._cache)
