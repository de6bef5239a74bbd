r"""Keyframe model of the keyframes + TSR cascade baseline (SPEC §1,
`stunet.conditioning.keyframes_tsr`).

The argument names a base config in `experiments/configs/` (default `quickstart`); this is that
config on every k-th frame (k = its `stage.tsr.keyframe_interval`): `data.frames / k` frames at
`data.fps / k`, temporal factors reduced where `T / k` needs it. Train the T2I and keyframe
models with it, then the TSR model with the base config in the same workdir (it inflates the
same T2I run), and sample the cascade:

  python -m experiments.train --config=experiments/configs/keyframes.py:quickstart \
      --workdir=runs/keyframes
  python -m experiments.train --config=experiments/configs/quickstart.py --workdir=runs/keyframes \
      --config.stages=tsr
  python -m experiments.sample --workdir=runs/keyframes --tsr_workdir=runs/keyframes \
      --prompt="a small blue square bouncing quickly up and down"

`experiments/ablate.py` trains the same pair as its `keyframes_tsr` variant.
"""

import importlib

from stunet.conditioning import keyframes_tsr


def get_config(arg=None):
  name = arg or "quickstart"
  base = importlib.import_module(f"experiments.configs.{name}").get_config()
  return keyframes_tsr.keyframe_config(base)
