"""Defaults of the training sections: `stages`, `optim`, `mesh`, `ckpt`, `log`, `sample`.

Only the numbers live here; `stunet.config.default_config` assembles them with the model,
text, diffusion and data sections.
"""

from __future__ import annotations

import ml_collections


def optim_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.learning_rate = 1e-4
  c.warmup_steps = 100
  c.decay_steps = 0  # 0: total steps of the stage (cosine decay to end_lr_fraction * lr)
  c.end_lr_fraction = 0.1
  c.b1 = 0.9
  c.b2 = 0.99
  c.weight_decay = 0.0
  c.grad_clip = 1.0
  c.ema_decay = 0.999
  c.num_steps = 1000
  return c


def mesh_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.axes = ("data", "fsdp", "tensor")
  c.shape = (1, -1, 1)  # -1 = all remaining devices
  # Logical axis -> mesh axis (or None). Parameters: FSDP over their largest axes; tensor
  # parallelism over heads / MLP; activations over the batch.
  c.rules = (
      ("activation_batch", ("data", "fsdp")),
      ("activation_frames", None),
      ("activation_height", None),
      ("activation_width", None),
      ("activation_channels", "tensor"),
      ("activation_length", None),
      ("activation_embed", "tensor"),
      ("conv_in", None),
      ("conv_out", "fsdp"),
      ("embed", "fsdp"),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("vocab", None),
      ("relpos_buckets", None),
      ("norm", None),
  )
  return c


def ckpt_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.every_steps = 500
  c.keep_last = 3
  c.keep_every = 0  # 0 = none; otherwise also keep every K-th step permanently
  c.async_save = True
  return c


def log_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.every_steps = 50
  c.sample_every_steps = 0  # 0 = only at the end of a stage
  c.num_samples = 4
  return c


def sample_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.prompts = ("a red circle moving quickly to the left",
               "a small blue square bouncing up and down")
  c.seed = 0
  return c
