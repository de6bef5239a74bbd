"""Tests for the text config defaults and validation."""

import pytest

from stunet.text import config as config_lib


def test_defaults_validate():
  config = config_lib.text_config()
  config_lib.validate(config)
  assert config.kind == "bytes_transformer"


@pytest.mark.parametrize("field,value", [
    ("kind", "clip"),
    ("max_length", 0),
    ("on_truncation", "drop"),
    ("cache_size", -1),
    ("width", 0),
    ("depth", 0),
    ("heads", 0),
    ("mlp_ratio", 0),
    ("dropout_rate", 1.0),
])
def test_bad_value_names_the_field(field, value):
  config = config_lib.text_config()
  config[field] = value
  with pytest.raises(ValueError, match=f"text.{field}"):
    config_lib.validate(config)


def test_t5_kind_skips_the_small_encoder_fields():
  config = config_lib.text_config()
  config.kind = "t5"
  config.heads = 3  # irrelevant to T5; must not be checked
  config_lib.validate(config)
