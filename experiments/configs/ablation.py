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
  x4_bottleneck           x4 at the coarsest down-sampler only
  no_temporal_attention   the base factors, without temporal attention layers

Each variant is `(name, ((dotted.field, value), ...))`: overrides of the base config.
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
  return c
