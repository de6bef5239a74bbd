"""Builds the tokenizer and encoder module named by ``config.text.kind`` (SPEC §3).

Each kind registers a builder ``text_config -> (tokenizer, flax module)``. The module is called
as ``module.apply(variables, ids, mask, deterministic=True) -> [b, L, width]``.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from stunet.text import byte_tokenizer
from stunet.text import config as config_lib
from stunet.text import interface
from stunet.text import transformer_encoder


def _bytes_transformer(config: ml_collections.ConfigDict):
  tokenizer = byte_tokenizer.ByteTokenizer(config.max_length, config.on_truncation)
  module = transformer_encoder.TransformerTextEncoder(
      vocab_size=byte_tokenizer.VOCAB_SIZE, max_length=config.max_length, width=config.width,
      depth=config.depth, heads=config.heads, mlp_dim=config.mlp_ratio * config.width,
      dropout_rate=config.dropout_rate, name="text_encoder")
  return tokenizer, module


BUILDERS: dict[str, Callable[[ml_collections.ConfigDict],
                             tuple[interface.Tokenizer, nn.Module]]] = {
    "bytes_transformer": _bytes_transformer,
}


def make_text_encoder(
    config: ml_collections.ConfigDict) -> tuple[interface.Tokenizer, nn.Module]:
  """``(tokenizer, module)`` for the ``text`` config section."""
  config_lib.validate(config)
  if config.kind not in BUILDERS:
    raise ValueError(f"text.kind={config.kind!r} has no encoder builder; available: "
                     f"{tuple(BUILDERS)}")
  return BUILDERS[config.kind](config)
