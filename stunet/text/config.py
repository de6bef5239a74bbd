"""Defaults and validation of the ``text`` config section (SPEC §3).

``kind`` picks the encoder: 'bytes_transformer' (byte tokenizer + small transformer trained
with the T2I stage, then frozen), 'words_transformer' (the same transformer over hashed whole
words, which a small encoder learns to read far sooner) or 't5' (a frozen pre-trained T5 port). ``max_length`` is the
number of tokens the U-Net's cross-attention sees, whatever the kind.
"""

from __future__ import annotations

import ml_collections

from stunet.text import byte_tokenizer

KINDS = ("bytes_transformer", "words_transformer", "t5")
T5_DTYPES = ("float32", "bfloat16")
# Kinds whose small transformer trains with the T2I stage.
TRAINED_KINDS = ("bytes_transformer", "words_transformer")


def text_config() -> ml_collections.ConfigDict:
  """The ``text`` section with defaults sized for the small byte encoder."""
  c = ml_collections.ConfigDict()
  c.kind = "bytes_transformer"
  c.max_length = 64  # tokens, EOS included; bytes for 'bytes_transformer', words for 'words_...'
  c.word_buckets = 16384  # 'words_transformer': hash buckets (word ids)
  c.on_truncation = "warn"  # 'warn' | 'error' | 'silent'
  # Small transformer ('bytes_transformer', 'words_transformer').
  c.width = 256
  c.depth = 4
  c.heads = 4
  c.mlp_ratio = 4
  c.dropout_rate = 0.0
  # Pre-trained T5 ('t5'): local Hugging Face directories (nothing is downloaded).
  c.t5_dir = ""  # T5EncoderModel / T5ForConditionalGeneration: config.json + safetensors
  c.t5_tokenizer = ""  # spiece.model or its directory; "" = text.t5_dir
  # The frozen T5's weights and compute: 'bfloat16' halves its memory and its share of the
  # step (T5-XXL: 4.8 B parameters, 19 GB in float32); layer norms and softmax stay float32.
  c.t5_dtype = "float32"  # 'float32' | 'bfloat16'
  # Frozen encoders: LRU cache of caption embeddings on the host (0 = no cache).
  c.cache_size = 100_000
  return c


def validate(config: ml_collections.ConfigDict) -> None:
  """Raise ``ValueError`` naming the first bad field of a ``text`` section."""
  if config.kind not in KINDS:
    raise ValueError(f"text.kind must be one of {KINDS}, got {config.kind!r}")
  if not isinstance(config.max_length, int) or config.max_length < 1:
    raise ValueError(f"text.max_length must be a positive integer, got {config.max_length!r}")
  if config.on_truncation not in byte_tokenizer.TRUNCATION_MODES:
    raise ValueError(f"text.on_truncation must be one of {byte_tokenizer.TRUNCATION_MODES}, "
                     f"got {config.on_truncation!r}")
  if config.get("t5_dtype", "float32") not in T5_DTYPES:
    raise ValueError(f"text.t5_dtype must be one of {T5_DTYPES}, got {config.t5_dtype!r}")
  if config.cache_size < 0:
    raise ValueError(f"text.cache_size must be >= 0, got {config.cache_size!r}")
  if config.kind == "words_transformer" and (
      not isinstance(config.word_buckets, int) or config.word_buckets < 1):
    raise ValueError(f"text.word_buckets must be a positive integer, got {config.word_buckets!r}")
  if config.kind in TRAINED_KINDS:
    for field in ("width", "depth", "heads", "mlp_ratio"):
      if not isinstance(config[field], int) or config[field] < 1:
        raise ValueError(f"text.{field} must be a positive integer, got {config[field]!r}")
    if config.width % config.heads:
      raise ValueError(
          f"text.width ({config.width}) must be divisible by text.heads ({config.heads})")
    if not 0.0 <= config.dropout_rate < 1.0:
      raise ValueError(f"text.dropout_rate must be in [0, 1), got {config.dropout_rate!r}")
