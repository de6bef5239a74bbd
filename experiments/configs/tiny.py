r"""Tiny: the smallest complete STUNet, for tests and CI (8 frames of 16x16).

  python -m experiments.summary --config=experiments/configs/tiny.py
"""

from stunet.config import default_config


def get_config(arg=None):
  del arg
  c = default_config("tiny")
  c.model.update(dict(
      channels=16, channel_mult=(1, 2, 2), num_res_blocks=(1, 1, 1),
      attention_levels=(False, True, True), num_heads=(2, 2, 2), mid_num_heads=2,
      norm_groups=4, temporal_factors=(2, 2), temporal_attention_heads=2,
      temporal_attention_depth=1))
  # Captions of shapes_video are at most ~116 bytes: keep them whole.
  c.text.update(dict(max_length=128, width=32, depth=1, heads=2))
  c.diffusion.sample_steps = 8
  c.optim.update(dict(num_steps=20, warmup_steps=2, learning_rate=1e-3))
  c.ckpt.every_steps = 10
  c.log.every_steps = 5
  return c
