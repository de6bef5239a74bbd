"""Imports a local HF T5 checkpoint (safetensors) into ``stunet.text.t5.T5Encoder``.

Reads ``config.json`` and ``model.safetensors`` (or a sharded ``model.safetensors.index.json``)
of a ``T5EncoderModel`` directory, or of a full ``T5ForConditionalGeneration`` / ``T5Model``
checkpoint whose decoder is reported as ignored. Nothing is downloaded and torch is not needed.

Every tensor is either mapped or reported: a missing tensor raises ``MissingTensorError``, an
unmapped one ``UnexpectedTensorError``, and config options that would change the encoder's
computation but are not supported raise ``ValueError`` naming them.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np

from stunet.convert.safetensors_io import CheckpointError
from stunet.convert.safetensors_io import CheckpointTensors
from stunet.convert.safetensors_io import IgnoredGroup
from stunet.text.t5 import ACTIVATIONS
from stunet.text.t5 import T5Config

SUPPORTED_MODEL_TYPES = ("t5", "mt5")  # mT5 shares T5 v1.1's encoder and tensor names.
SUPPORTED_ARCHITECTURES = ("T5EncoderModel", "T5ForConditionalGeneration", "T5Model",
                           "MT5EncoderModel", "MT5ForConditionalGeneration", "MT5Model")

# config.json keys that do not change the encoder's forward pass: decoder/generation settings,
# token ids, init and bookkeeping fields of HF's T5Config and PretrainedConfig (v4 and v5).
_IRRELEVANT_CONFIG_KEYS = frozenset({
    "_name_or_path", "architectures", "model_type", "transformers_version", "dtype",
    "torch_dtype", "use_bfloat16", "initializer_factor", "classifier_dropout", "use_cache",
    "is_encoder_decoder", "num_decoder_layers", "decoder_start_token_id", "pad_token_id",
    "eos_token_id", "bos_token_id", "sep_token_id", "tie_word_embeddings",
    "scale_decoder_outputs", "tie_encoder_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "output_past", "n_positions", "task_specific_params",
    "gradient_checkpointing", "tokenizer_class", "prefix", "id2label", "label2id",
    "num_labels", "problem_type", "finetuning_task", "return_dict", "use_return_dict",
    "output_attentions", "output_hidden_states", "torchscript", "pruned_heads",
    "chunk_size_feed_forward", "tf_legacy_loss", "max_length", "min_length", "do_sample",
    "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature",
    "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
    "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate",
    "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
})

# Keys read into T5Config (or checked) below.
_ARCHITECTURE_KEYS = frozenset({
    "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
    "relative_attention_num_buckets", "relative_attention_max_distance",
    "layer_norm_epsilon", "dropout_rate", "feed_forward_proj", "dense_act_fn",
    "is_gated_act", "is_decoder",
})

# Every key of a T5 / mT5 config.json that is looked at; any other key is refused by name
# (tested against the installed transformers' T5Config, so a new option is refused until read).
HANDLED_CONFIG_KEYS = _IRRELEVANT_CONFIG_KEYS | _ARCHITECTURE_KEYS

# HF's T5Config defaults for optional keys (older configs omit some of them).
_DEFAULTS = {"relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
             "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1, "feed_forward_proj": "relu"}
_REQUIRED = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")

_DECODER_PREFIXES = ("decoder.", "lm_head.")


def parse_feed_forward_proj(value: str) -> tuple[str, bool]:
  """HF's ``feed_forward_proj`` ('relu', 'gated-gelu', ...) -> (activation, gated)."""
  parts = str(value).split("-")
  gated = len(parts) == 2 and parts[0] == "gated"
  if len(parts) > 2 or (len(parts) == 2 and not gated):
    raise ValueError(f"config.json: feed_forward_proj={value!r} is not of the form "
                     "'ACT' or 'gated-ACT'.")
  activation = parts[-1]
  # HF maps 'gated-gelu' to the tanh approximation for backwards compatibility (T5 v1.1).
  if value == "gated-gelu":
    activation = "gelu_new"
  return activation, gated


def t5_config_from_hf(hf_config: dict[str, Any],
                      extra_ignored_keys: Iterable[str] = ()) -> T5Config:
  """Builds our ``T5Config`` from a parsed HF ``config.json``; unsupported options raise."""
  model_type = hf_config.get("model_type")
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise ValueError(f"config.json: model_type={model_type!r} is not supported; expected one "
                     f"of {SUPPORTED_MODEL_TYPES} (umT5 and LongT5 use different attention).")
  architectures = hf_config.get("architectures") or []
  unknown_arch = [a for a in architectures if a not in SUPPORTED_ARCHITECTURES]
  if unknown_arch:
    raise ValueError(f"config.json: architectures {unknown_arch} are not supported; "
                     f"expected one of {SUPPORTED_ARCHITECTURES}.")
  if hf_config.get("is_decoder", False):
    raise ValueError("config.json: is_decoder=true describes a causal decoder stack; only the "
                     "bidirectional encoder is supported.")
  known = _IRRELEVANT_CONFIG_KEYS | _ARCHITECTURE_KEYS | set(extra_ignored_keys)
  unknown = sorted(set(hf_config) - known)
  if unknown:
    raise ValueError(f"config.json: unsupported or unknown option(s) {unknown}. If they do not "
                     "change the encoder's computation, pass them in `extra_ignored_keys`.")
  missing = [k for k in _REQUIRED if k not in hf_config]
  if missing:
    raise ValueError(f"config.json: required option(s) {missing} are missing.")

  values = {**_DEFAULTS, **{k: v for k, v in hf_config.items() if k in _ARCHITECTURE_KEYS}}
  activation, gated = parse_feed_forward_proj(values["feed_forward_proj"])
  # Configs written by transformers also store the derived fields; they must agree.
  for key, derived in (("dense_act_fn", activation), ("is_gated_act", gated)):
    if key in hf_config and hf_config[key] != derived:
      raise ValueError(f"config.json: {key}={hf_config[key]!r} contradicts "
                       f"feed_forward_proj={values['feed_forward_proj']!r} (implies {derived!r}).")
  if activation not in ACTIVATIONS:
    raise ValueError(f"config.json: feed_forward_proj={values['feed_forward_proj']!r} uses "
                     f"activation {activation!r}; supported: {sorted(ACTIVATIONS)}.")
  buckets = values["relative_attention_num_buckets"]
  max_distance = values["relative_attention_max_distance"]
  max_exact = (int(buckets) // 2) // 2 if isinstance(buckets, int) else 0
  if isinstance(buckets, int) and buckets > 0 and not 0 < max_exact < max_distance:
    # The logarithmic buckets divide by log(max_distance / max_exact): HF's own encoder then
    # indexes out of its bias table, so there is no behaviour to reproduce.
    raise ValueError(f"config.json: relative_attention_num_buckets={buckets} with "
                     f"relative_attention_max_distance={max_distance} is not supported; it needs "
                     f"at least 4 buckets and a maximum distance above num_buckets // 4 "
                     f"({max_exact}).")
  return T5Config(
      vocab_size=int(values["vocab_size"]), d_model=int(values["d_model"]),
      d_kv=int(values["d_kv"]), d_ff=int(values["d_ff"]), num_layers=int(values["num_layers"]),
      num_heads=int(values["num_heads"]),
      relative_attention_num_buckets=int(values["relative_attention_num_buckets"]),
      relative_attention_max_distance=int(values["relative_attention_max_distance"]),
      layer_norm_epsilon=float(values["layer_norm_epsilon"]),
      dropout_rate=float(values["dropout_rate"]), dense_act_fn=activation, is_gated_act=gated)


def _token_embedding(tensors: CheckpointTensors, config: T5Config) -> np.ndarray:
  """``shared.weight`` and ``encoder.embed_tokens.weight`` are tied in HF; either may be stored."""
  shape = (config.vocab_size, config.d_model)
  names = [n for n in ("shared.weight", "encoder.embed_tokens.weight") if n in tensors]
  if not names:
    raise CheckpointError(f"Neither 'shared.weight' nor 'encoder.embed_tokens.weight' is in "
                          f"{tensors.source}: no token embedding.")
  arrays = [tensors.take(n, shape) for n in names]
  if len(arrays) == 2 and not np.array_equal(arrays[0], arrays[1]):
    raise CheckpointError(f"{tensors.source}: 'shared.weight' and "
                          "'encoder.embed_tokens.weight' differ, but T5 ties them.")
  return arrays[0]


def convert_t5_encoder(tensors: CheckpointTensors, config: T5Config,
                       param_dtype: Any = np.float32) -> dict[str, Any]:
  """Maps HF tensor names to ``T5Encoder``'s parameter tree (``{'params': ...}``).

  torch ``Linear`` weights are ``[out, in]``; Flax ``Dense`` kernels are ``[in, out]``.
  Decoder tensors of a full checkpoint are ignored and listed in ``tensors.ignored``; any
  other leftover tensor raises ``UnexpectedTensorError``.
  """
  d, inner, ff = config.d_model, config.inner_dim, config.d_ff
  cast = lambda a: np.asarray(a, dtype=param_dtype)
  linear = lambda name, out_dim, in_dim: cast(tensors.take(name, (out_dim, in_dim)).T)
  norm = lambda name: {"scale": cast(tensors.take(name, (d,)))}

  params: dict[str, Any] = {"token_embedding": {"embedding": cast(_token_embedding(tensors,
                                                                                   config))}}
  for i in range(config.num_layers):
    prefix = f"encoder.block.{i}.layer."
    attn = prefix + "0.SelfAttention."
    attention = {n: {"kernel": linear(attn + f"{n}.weight", inner, d)} for n in "qkv"}
    attention["o"] = {"kernel": linear(attn + "o.weight", d, inner)}
    if i == 0:
      attention["relative_attention_bias"] = cast(tensors.take(
          attn + "relative_attention_bias.weight",
          (config.relative_attention_num_buckets, config.num_heads)))
    ffn = prefix + "1.DenseReluDense."
    if config.is_gated_act:
      mlp = {"wi_0": {"kernel": linear(ffn + "wi_0.weight", ff, d)},
             "wi_1": {"kernel": linear(ffn + "wi_1.weight", ff, d)}}
    else:
      mlp = {"wi": {"kernel": linear(ffn + "wi.weight", ff, d)}}
    mlp["wo"] = {"kernel": linear(ffn + "wo.weight", d, ff)}
    params[f"layers_{i}"] = {
        "attention_norm": norm(prefix + "0.layer_norm.weight"),
        "attention": attention,
        "mlp_norm": norm(prefix + "1.layer_norm.weight"),
        "mlp": mlp,
    }
  params["final_norm"] = norm("encoder.final_layer_norm.weight")

  for prefix in _DECODER_PREFIXES:
    tensors.ignore(prefix, "decoder / LM head of an encoder-decoder checkpoint; only the "
                   "encoder is used for text conditioning")
  tensors.check_all_consumed()
  return {"params": params}


def read_t5_config(model_dir: str, extra_ignored_keys: Iterable[str] = ()) -> T5Config:
  """The ``T5Config`` of a local HF T5 directory (reads only ``config.json``)."""
  config_path = os.path.join(model_dir, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"No config.json in {model_dir!r}: expected a HF T5 model "
                            "directory (config.json + model.safetensors).")
  with open(config_path, encoding="utf-8") as f:
    return t5_config_from_hf(json.load(f), extra_ignored_keys)


def load_t5_encoder(model_dir: str, param_dtype: Any = np.float32,
                    extra_ignored_keys: Iterable[str] = ()
                    ) -> tuple[T5Config, dict[str, Any]]:
  """Reads a local HF T5 directory -> ``(T5Config, variables)`` for ``T5Encoder.apply``.

  The decoder of a full encoder-decoder checkpoint is skipped; the returned variables do not
  record that, so call ``load_t5_encoder_with_report`` to see what was ignored.
  """
  config, variables, _ = load_t5_encoder_with_report(model_dir, param_dtype,
                                                     extra_ignored_keys)
  return config, variables


def load_t5_encoder_with_report(model_dir: str, param_dtype: Any = np.float32,
                                extra_ignored_keys: Iterable[str] = ()
                                ) -> tuple[T5Config, dict[str, Any], list[IgnoredGroup]]:
  """Like ``load_t5_encoder``, also returning the groups of ignored tensors."""
  config = read_t5_config(model_dir, extra_ignored_keys)
  tensors = CheckpointTensors.from_directory(model_dir)
  variables = convert_t5_encoder(tensors, config, param_dtype)
  return config, variables, tensors.ignored
