r"""Base: Lumiere's base-model video size, 80 frames of 128x128 at 16 fps, at moderate width.

Five levels (128, 64, 32, 16, 8 px) with x2 temporal down-sampling at each of the four
down-samplers (80, 40, 20, 10, 5 frames): most computation happens on the compact space-time
representation, and the coarsest level's temporal attention spans 5 frames covering the clip.
Widths are Imagen-like but smaller than `paper.py` (128 base channels).

  python -m experiments.summary --config=experiments/configs/base.py
"""

from stunet.config import default_config


def get_config(arg=None):
  del arg
  c = default_config("paper")  # the 128 px / 80 frame shapes_video builder config
  c.data.update(dict(global_batch_size=64))
  c.model.update(dict(
      channels=128, channel_mult=(1, 2, 3, 4, 4), num_res_blocks=(2, 2, 2, 2, 2),
      attention_levels=(False, False, True, True, True), head_dim=64, norm_groups=32,
      temporal_factors=(2, 2, 2, 2), temporal_attention_heads=8, temporal_attention_depth=2,
      dtype="bfloat16", remat=True))
  c.text.update(dict(max_length=128, width=512, depth=6, heads=8))
  c.optim.update(dict(num_steps=200_000, warmup_steps=5000, learning_rate=1e-4))
  return c
