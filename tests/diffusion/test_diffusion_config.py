"""Tests for the diffusion config defaults and validation."""

import pytest

from stunet.diffusion import config as config_lib


def test_defaults_validate():
  config = config_lib.diffusion_config()
  config_lib.validate(config)
  assert config.prediction == "v"
  assert config.cond_drop == 0.1


@pytest.mark.parametrize("field,value", [
    ("schedule", "linear"),
    ("logsnr_min", 30.0),
    ("shift_base_res", -64.0),
    ("prediction", "score"),
    ("noise_cond", "sigma"),
    ("loss_weighting", "p2"),
    ("min_snr_gamma", 0.0),
    ("time_sampling", "sobol"),
    ("cond_drop", 1.5),
    ("sampler", "euler"),
    ("sample_steps", 0),
    ("eta", -0.1),
    ("guidance", -1.0),
    ("thresholding", "soft"),
    ("dynamic_percentile", 0.0),
])
def test_bad_value_names_the_field(field, value):
  config = config_lib.diffusion_config()
  config[field] = value
  with pytest.raises(ValueError, match=f"diffusion.{field}"):
    config_lib.validate(config)


def test_missing_field_is_listed():
  config = config_lib.diffusion_config()
  del config["eta"]
  with pytest.raises(ValueError, match="eta"):
    config_lib.validate(config)
