r"""The temporal down-sampling sweep: a base config and its variants (`experiments/ablate.py`).

  python -m experiments.ablate --sweep=experiments/configs/ablation.py --workdir=runs/ablation
  python -m experiments.ablate --sweep=experiments/configs/ablation.py:tiny --workdir=runs/abl_tiny

The argument names the base experiment config in `experiments/configs/` (default
`quickstart`). Variants, derived from the base model's number of temporal down-samplers n
(one per spatial down-sampler):

  stunet                  the base config's own temporal factors (Lumiere's design)
  no_temporal_downsampling  every factor 1: all layers see every frame
  x2_coarsest_two         x2 at the two coarsest down-samplers only (only when n > 2)
  x2_every_level          x2 at every down-sampler
  x4_bottleneck           x4 at the coarsest down-sampler only (its resampler kernels are
                          7 = 2*4 - 1, so every frame is read: `temporal_resample_kernel_for`)
  no_temporal_attention   the base factors, without temporal attention layers
  keyframes_tsr           the cascade Lumiere argues against (SPEC §1): a keyframe model on
                          every k-th frame (k = stage.tsr.keyframe_interval, 2 here; the base
                          factors reduced where T/k needs it) and a TSR model (stage `tsr`)
                          filling the frames between the keyframes, both from the shared T2I
                          run. Analysis rows sum the two models; with --train_steps N the
                          keyframe model trains round(N * keyframe_step_fraction) steps and the
                          TSR model the rest, at the video stage's batch, so its budget is the
                          other variants'. Only when k divides the base's data.frames.

Each variant is `(name, ((dotted.field, value), ...))`: overrides of the base config, or
`(name, overrides, kind)` with a kind of `stunet.eval.ablation.VARIANT_KINDS` ('video', the
default: one STUNet; 'keyframes_tsr': the cascade above). The quality tables report every
variant on all test captions and on the fast-motion ones (a quick or a bouncing object), where
keyframes alias the motion.
"""

import importlib

import ml_collections


def variants(base: ml_collections.ConfigDict) -> tuple:
  n = len(base.model.channel_mult) - 1
  out = [("stunet", ()),
         ("no_temporal_downsampling", (("model.temporal_factors", (1,) * n),))]
  if n > 2:
    out.append(("x2_coarsest_two", (("model.temporal_factors", (1,) * (n - 2) + (2, 2)),)))
  out += [("x2_every_level", (("model.temporal_factors", (2,) * n),)),
          ("x4_bottleneck", (("model.temporal_factors", (1,) * (n - 1) + (4,)),)),
          ("no_temporal_attention", (("model.temporal_attention_levels", ()),
                                     ("model.temporal_attention_mid", False)))]
  interval = 2
  if base.data.frames and base.data.frames % interval == 0:
    out.append(("keyframes_tsr", (("stage.tsr.keyframe_interval", interval),),
                "keyframes_tsr"))
  return tuple(out)


def get_config(arg=None):
  name = arg or "quickstart"
  base = importlib.import_module(f"experiments.configs.{name}").get_config()
  c = ml_collections.ConfigDict()
  c.base_name = name
  c.base = base
  c.variants = variants(base)
  c.frames = (16, 32, 80)  # clip lengths T of the compile-only analysis
  c.analysis_batch = 1  # clips per analysed train step (FLOPs and memory per clip)
  c.step_time_repeats = 3  # timed runs of each compiled step (0 = compile only)
  c.eval_prompts = 32  # test-split captions per variant when training (--train_steps)
  c.keyframe_step_fraction = 0.5  # keyframes_tsr: the keyframe model's share of the steps
  return c
