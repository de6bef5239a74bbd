"""The full experiment config: every section with its defaults (STYLE: configs as code).

`experiments/configs/*.py` start from `default_config(variant)` and override fields. Each
section's defaults live next to the code that reads them: `stunet.nn.config`,
`stunet.text.config`, `stunet.diffusion.config`, `stunet.data.config`, `stunet.train.config`.
"""

from __future__ import annotations

import ml_collections

from stunet.data.config import data_config
from stunet.diffusion.config import diffusion_config
from stunet.nn.config import model_config
from stunet.text.config import text_config
from stunet.train import config as train_config


def default_config(data_variant: str = "demo") -> ml_collections.ConfigDict:
  """All sections with defaults; `data_variant` picks the `data` section's dataset size."""
  c = ml_collections.ConfigDict()
  # Stages run in order by experiments/train.py: "t2i" trains the T2I U-Net (and the small text
  # encoder) on frames; "video" inflates it into a STUNet and trains the temporal layers.
  c.stages = "t2i,video"
  c.seed = 0
  c.model = model_config()
  c.text = text_config()
  c.diffusion = diffusion_config()
  c.data = data_config(data_variant)
  c.optim = train_config.optim_config()
  c.mesh = train_config.mesh_config()
  c.ckpt = train_config.ckpt_config()
  c.log = train_config.log_config()
  c.sample = train_config.sample_config()
  c.stage = train_config.stage_config()
  return c
