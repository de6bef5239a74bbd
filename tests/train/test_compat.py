"""The resume check: which config changes `compat.check_resume` refuses and which it allows."""

import pytest

from experiments.configs import tiny
from stunet.train import compat


def _fields(**overrides):
  config = tiny.get_config()
  for name, value in overrides.items():
    section, field = name.split("__")
    config[section][field] = value
  return compat.compared_fields(config)


def test_same_config_is_compatible():
  assert compat.check_resume(_fields(), _fields(), "w", allow_change=False) == []


def test_model_change_is_refused_and_named():
  saved = _fields()
  current = _fields(model__channels=24)
  with pytest.raises(compat.ConfigMismatchError, match=r"model\.channels: 16 -> 24"):
    compat.check_resume(saved, current, "w", allow_change=False)
  assert compat.check_resume(saved, current, "w", allow_change=True) == [
      "model.channels: 16 -> 24"]


@pytest.mark.parametrize("name,value", [("model__temporal_conv_impl", "matmul"),
                                        ("model__remat", True),
                                        ("data__data_dir", "elsewhere")])
def test_speed_only_fields_do_not_block_resume(name, value):
  assert compat.check_resume(_fields(), _fields(**{name: value}), "w", allow_change=False) == []


def test_checkpoint_from_before_a_speed_field_existed_resumes():
  saved = {k: v for k, v in _fields().items() if k != "model.temporal_conv_impl"}
  assert compat.check_resume(saved, _fields(), "w", allow_change=False) == []


def test_checkpoint_from_before_a_field_existed_resumes_at_the_default_only():
  saved = {k: v for k, v in _fields().items() if k != "text.word_buckets"}
  assert compat.check_resume(saved, _fields(), "w", allow_change=False) == []
  # The same missing field at another value is a change, named as such.
  with pytest.raises(compat.ConfigMismatchError, match=r"text\.word_buckets: <absent> -> 64"):
    compat.check_resume(saved, _fields(text__word_buckets=64), "w", allow_change=False)


def test_a_field_the_current_config_lost_is_still_named():
  current = {k: v for k, v in _fields().items() if k != "model.channels"}
  with pytest.raises(compat.ConfigMismatchError, match=r"model\.channels: 16 -> <absent>"):
    compat.check_resume(_fields(), current, "w", allow_change=False)


def test_checkpoint_from_before_the_null_text_option_resumes_as_zeros():
  # Such a run trained with the zero null text, which is what `auto` resolves to from scratch.
  saved = {k: v for k, v in _fields().items() if k != "diffusion.null_text"}
  assert compat.check_resume(saved, _fields(diffusion__null_text="zeros"), "w",
                             allow_change=False) == []
  with pytest.raises(compat.ConfigMismatchError,
                     match=r'diffusion\.null_text: <absent> -> "empty_caption"'):
    compat.check_resume(saved, _fields(diffusion__null_text="empty_caption"), "w",
                        allow_change=False)
