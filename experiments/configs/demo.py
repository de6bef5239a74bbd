r"""Demo: the CPU quick start (16 frames of 32x32 from the embedded shapes_video dataset).

Three resolution levels (32, 16, 8 px) and two x2 temporal down-samplings (16, 8, 4 frames),
so the coarsest level and the mid block's temporal attention see the whole clip.

  python -m experiments.summary --config=experiments/configs/demo.py
"""

from stunet.config import default_config


def get_config(arg=None):
  del arg
  c = default_config("demo")
  c.model.update(dict(
      channels=32, channel_mult=(1, 2, 2), num_res_blocks=(1, 1, 1),
      attention_levels=(False, True, True), num_heads=(2, 2, 2), mid_num_heads=2,
      norm_groups=8, temporal_factors=(2, 2), temporal_attention_heads=4,
      temporal_attention_depth=1))
  # Captions of shapes_video are at most ~116 bytes: keep them whole.
  c.text.update(dict(max_length=128, width=64, depth=2, heads=2))
  c.diffusion.sample_steps = 32
  c.optim.update(dict(num_steps=1000, warmup_steps=50, learning_rate=5e-4))
  # SSR stage: 32 -> 64 px on windows of 8 frames, trained on the 64 px dataset variant.
  c.stage.ssr.update(dict(builder_config="r64_f16_fps16", resolution=64, low_resolution=32,
                          window_frames=8))
  return c
