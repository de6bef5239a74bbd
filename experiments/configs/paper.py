r"""Paper: our documented best estimate of Lumiere's base STUNet (SPEC §7). Not from the paper.

The paper gives no parameter counts, widths or compute. Assumptions, each a choice:
- Video: 80 frames of 128x128 at 16 fps (stated in the paper).
- Spatial U-Net: an Imagen-style pixel T2I model at 128 px, scaled like Imagen's 64 px base
  (2B parameters, 512 base channels) but with one more level for the higher resolution:
  256 base channels, multipliers (1, 2, 3, 4, 4) -> 256..1024 channels, 3 residual blocks per
  level, self+cross attention at 32, 16 and 8 px with 64-dim heads.
- Temporal: x2 temporal down-sampling at each of the 4 down-samplers (80 -> 5 frames);
  a stack of 4 temporal attention layers at the coarsest level and in the mid block; temporal
  convs (kernel 3) after every spatial unit.
- Text: a frozen T5-XXL encoder (4096-dim, 128 tokens), as in Imagen; its weights are not part
  of the U-Net's count (`text.kind='t5'` needs `text.t5_dir` to train).
- `model.temporal_text='none'`: the temporal layers see features only, as in the paper. Its
  frozen T2I was trained on web images and carries motion semantics ("a dog running"); text in
  the temporal layers (our extension, SPEC §2) is for T2I models that carry none.
- bfloat16 compute, float32 parameters, rematerialised blocks.
Check it fits before launching: `python -m experiments.aot_check --config=experiments/configs/paper.py`.

  python -m experiments.summary --config=experiments/configs/paper.py
"""

from stunet.config import default_config


def get_config(arg=None):
  del arg
  c = default_config("paper")
  c.model.update(dict(
      channels=256, channel_mult=(1, 2, 3, 4, 4), num_res_blocks=(3, 3, 3, 3, 3),
      attention_levels=(False, False, True, True, True), head_dim=64, norm_groups=32,
      temporal_factors=(2, 2, 2, 2), temporal_attention_heads=16, temporal_attention_depth=4,
      temporal_attention_levels=(-1,), temporal_text="none", dtype="bfloat16", remat=True))
  # The frozen T5-XXL in bf16 (as it was trained): 9.5 GB of weights instead of 19.
  c.text.update(dict(kind="t5", max_length=128, width=4096, t5_dtype="bfloat16"))
  c.optim.update(dict(num_steps=500_000, warmup_steps=10_000, learning_rate=1e-4))
  # SSR stage: 128 -> 1024 px (the paper's output) on windows of 16 frames (T' must divide by
  # the temporal factors' product, 16); needs a dataset of >= 1024 px clips
  # (`stage.ssr.builder_config`).
  c.stage.ssr.update(dict(resolution=1024, low_resolution=128, window_frames=16))
  return c
