"""The `data` config section defaults."""

import pytest

from stunet.data import config as data_config_lib


def test_demo_defaults():
  c = data_config_lib.data_config()
  assert (c.dataset, c.builder_config, c.frames, c.resolution, c.fps) == (
      "shapes_video", "demo", 16, 32, 16)
  assert c.flip is False and c.worker_count == 0 and c.modality == "video"


def test_image_variant_and_overrides():
  c = data_config_lib.data_config("demo_image")
  assert c.modality == "image" and c.builder_config == "image_r32"
  c.frames = 8
  c.num_epochs = 1
  assert c.frames == 8 and c.num_epochs == 1


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'huge'"):
    data_config_lib.data_config("huge")
