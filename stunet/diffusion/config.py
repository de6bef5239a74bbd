"""Defaults and validation of the ``diffusion`` config section (SPEC §3).

The paper gives no schedule, sampler or guidance scale; these defaults follow Imagen / Imagen
Video (cosine log-SNR, v-prediction, text dropout 0.1, dynamic thresholding) and are all
overridable, e.g. ``--config.diffusion.prediction=eps``.
"""

from __future__ import annotations

import ml_collections

from stunet.diffusion import loss as loss_lib
from stunet.diffusion import parameterization
from stunet.diffusion import samplers
from stunet.diffusion import thresholding

NOISE_CONDS = ("time", "logsnr")
SCHEDULES = ("cosine",)
NULL_TEXTS = ("auto", "zeros", "empty_caption")


def diffusion_config() -> ml_collections.ConfigDict:
  """The ``diffusion`` section with our defaults."""
  c = ml_collections.ConfigDict()
  # Schedule: cosine log-SNR clipped to [logsnr_min, logsnr_max] at t = 1 and t = 0.
  c.schedule = "cosine"
  c.logsnr_min = -20.0
  c.logsnr_max = 20.0
  # simple-diffusion resolution shift 2 log(shift_base_res / res); 0 = off.
  c.shift_base_res = 0.0
  # Model output: 'v' | 'eps' | 'x0'.
  c.prediction = "v"
  # What the model's noise embedding sees: 'time' (1000 t) | 'logsnr'.
  c.noise_cond = "time"
  # Training loss: MSE on the prediction target times a log-SNR weight.
  c.loss_weighting = "none"  # 'none' | 'min_snr' | 'v' | 'eps'
  c.min_snr_gamma = 5.0
  c.time_sampling = "low_discrepancy"  # 'low_discrepancy' | 'uniform'
  # Correlation of a video's per-frame noise, in training and sampling (`stunet.diffusion.noise`,
  # PYoCo's mixed noise prior): 0 = independent frames (the paper).
  c.frame_noise_correlation = 0.0
  # Classifier-free guidance: probability of training on the null text.
  c.cond_drop = 0.1
  # The null text (dropped captions in training, the unconditional half of guidance):
  # 'zeros' = an all-zero embedding valid at position 0 (`guidance.null_text`);
  # 'empty_caption' = the text encoder's embedding of "" with its tokenizer's mask, what public
  # SD / DeepFloyd IF U-Nets were trained with; 'auto' = 'empty_caption' for a U-Net imported
  # from public weights and what the parent stage used otherwise ('zeros' from scratch),
  # resolved when a stage starts and saved in its config.json.
  c.null_text = "auto"
  # Sampling defaults.
  c.sampler = "ddim"  # 'ddim' | 'ddpm'
  c.sample_steps = 64
  c.eta = 0.0
  c.guidance = 5.0
  c.thresholding = "dynamic"  # 'none' | 'static' | 'dynamic'
  c.dynamic_percentile = 0.995
  return c


def _one_of(config, field: str, choices) -> None:
  value = config[field]
  if value not in choices:
    raise ValueError(f"diffusion.{field} must be one of {tuple(choices)}, got {value!r}")


def _in_range(config, field: str, low: float, high: float, low_open=False) -> None:
  value = config[field]
  ok = (low < value if low_open else low <= value) and value <= high
  if not ok:
    bracket = "(" if low_open else "["
    raise ValueError(f"diffusion.{field} must be in {bracket}{low}, {high}], got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raise ``ValueError`` naming the first bad field of a ``diffusion`` section."""
  missing = sorted(set(diffusion_config().keys()) - set(config.keys()))
  if missing:
    raise ValueError(f"diffusion config is missing fields: {missing}")
  _one_of(config, "schedule", SCHEDULES)
  _one_of(config, "null_text", NULL_TEXTS)
  if not config.logsnr_min < config.logsnr_max:
    raise ValueError(f"diffusion.logsnr_min ({config.logsnr_min}) must be < "
                     f"diffusion.logsnr_max ({config.logsnr_max})")
  if config.shift_base_res < 0:
    raise ValueError(
        f"diffusion.shift_base_res must be >= 0 (0 = off), got {config.shift_base_res!r}")
  _one_of(config, "prediction", parameterization.PREDICTIONS)
  _one_of(config, "noise_cond", NOISE_CONDS)
  _one_of(config, "loss_weighting", loss_lib.WEIGHTINGS)
  if config.min_snr_gamma <= 0:
    raise ValueError(f"diffusion.min_snr_gamma must be > 0, got {config.min_snr_gamma!r}")
  _one_of(config, "time_sampling", loss_lib.TIME_SAMPLINGS)
  rho = config.frame_noise_correlation
  if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= rho < 1.0:
    raise ValueError(f"diffusion.frame_noise_correlation must be in [0, 1) (0 = independent "
                     f"frames), got {rho!r}")
  _in_range(config, "cond_drop", 0.0, 1.0)
  _one_of(config, "sampler", samplers.SAMPLERS)
  if not isinstance(config.sample_steps, int) or config.sample_steps < 1:
    raise ValueError(
        f"diffusion.sample_steps must be a positive integer, got {config.sample_steps!r}")
  _in_range(config, "eta", 0.0, 1.0)
  if config.guidance < 0:
    raise ValueError(f"diffusion.guidance must be >= 0, got {config.guidance!r}")
  _one_of(config, "thresholding", thresholding.THRESHOLDINGS)
  _in_range(config, "dynamic_percentile", 0.0, 1.0, low_open=True)
