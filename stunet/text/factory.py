"""Builds the tokenizer and encoder module named by ``config.text.kind`` (SPEC §3).

Each kind registers a builder ``text_config -> (tokenizer, flax module)``. The module is called
as ``module.apply(variables, ids, mask, deterministic=True) -> [b, L, width]``.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stunet.text import byte_tokenizer
from stunet.text import config as config_lib
from stunet.text import interface
from stunet.text import transformer_encoder
from stunet.text import word_tokenizer


def _bytes_transformer(config: ml_collections.ConfigDict):
  tokenizer = byte_tokenizer.ByteTokenizer(config.max_length, config.on_truncation)
  module = transformer_encoder.TransformerTextEncoder(
      vocab_size=byte_tokenizer.VOCAB_SIZE, max_length=config.max_length, width=config.width,
      depth=config.depth, heads=config.heads, mlp_dim=config.mlp_ratio * config.width,
      dropout_rate=config.dropout_rate, name="text_encoder")
  return tokenizer, module


def _words_transformer(config: ml_collections.ConfigDict):
  tokenizer = word_tokenizer.HashedWordTokenizer(config.max_length, config.word_buckets,
                                                 config.on_truncation)
  module = transformer_encoder.TransformerTextEncoder(
      vocab_size=tokenizer.vocab_size, max_length=config.max_length, width=config.width,
      depth=config.depth, heads=config.heads, mlp_dim=config.mlp_ratio * config.width,
      dropout_rate=config.dropout_rate, name="text_encoder")
  return tokenizer, module


def _t5_dir(config: ml_collections.ConfigDict) -> str:
  if not config.t5_dir:
    raise ValueError("text.kind='t5' needs text.t5_dir: a local Hugging Face T5EncoderModel (or "
                     "T5ForConditionalGeneration) directory with config.json and safetensors.")
  return config.t5_dir


def _t5(config: ml_collections.ConfigDict):
  # Imported here: sentencepiece is an optional dependency needed only for this kind.
  from stunet.convert import t5 as t5_convert  # pylint: disable=g-import-not-at-top
  from stunet.text import sentencepiece_tokenizer  # pylint: disable=g-import-not-at-top
  model_dir = _t5_dir(config)
  t5_config = t5_convert.read_t5_config(model_dir)
  tokenizer = sentencepiece_tokenizer.SentencePieceTokenizer(
      config.t5_tokenizer or model_dir, max_length=config.max_length)
  if tokenizer.vocab_size > t5_config.vocab_size:
    raise ValueError(f"The tokenizer at {config.t5_tokenizer or model_dir} has "
                     f"{tokenizer.vocab_size} ids but the T5 encoder at {model_dir} only "
                     f"{t5_config.vocab_size} embeddings (text.t5_tokenizer / text.t5_dir).")
  return tokenizer, t5_module(t5_config, config)


def t5_module(t5_config, text_config: ml_collections.ConfigDict) -> nn.Module:
  """The T5 encoder of `t5_config` in `text.t5_dtype` (weights and compute)."""
  from stunet.text import t5  # pylint: disable=g-import-not-at-top
  dtype = jnp.dtype(text_config.get("t5_dtype", "float32"))
  return t5.T5Encoder(t5_config, dtype=dtype, param_dtype=dtype, name="text_encoder")


BUILDERS: dict[str, Callable[[ml_collections.ConfigDict],
                             tuple[interface.Tokenizer, nn.Module]]] = {
    "bytes_transformer": _bytes_transformer,
    "words_transformer": _words_transformer,
    "t5": _t5,
}

# Kinds whose weights come from a checkpoint on disk rather than from training.
PRETRAINED_LOADERS: dict[str, Callable[[ml_collections.ConfigDict], dict]] = {
    "t5": lambda config: _load_t5_variables(config),
}


def _load_t5_variables(config: ml_collections.ConfigDict) -> dict:
  from stunet.convert import t5 as t5_convert  # pylint: disable=g-import-not-at-top
  return t5_convert.load_t5_encoder(_t5_dir(config))[1]


def load_pretrained_text_variables(config: ml_collections.ConfigDict) -> dict | None:
  """The frozen pre-trained encoder's variables for ``config.text``, or None when it trains."""
  config_lib.validate(config)
  loader = PRETRAINED_LOADERS.get(config.kind)
  return loader(config) if loader else None


def make_text_encoder(
    config: ml_collections.ConfigDict) -> tuple[interface.Tokenizer, nn.Module]:
  """``(tokenizer, module)`` for the ``text`` config section."""
  config_lib.validate(config)
  if config.kind not in BUILDERS:
    raise ValueError(f"text.kind={config.kind!r} has no encoder builder; available: "
                     f"{tuple(BUILDERS)}")
  return BUILDERS[config.kind](config)
