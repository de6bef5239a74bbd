r"""The temporal down-sampling ablation: cost analysis per variant, optionally quality.

  python -m experiments.ablate --sweep=experiments/configs/ablation.py --workdir=runs/ablation
  python -m experiments.ablate --sweep=experiments/configs/ablation.py --workdir=runs/ablation \
      --train_steps=200

For every variant of the sweep config: parameters, forward + backward FLOPs and peak memory of
the compiled video train step at each T of `sweep.frames` (compile only, minutes), the
measured step time on this machine and, with `--train_steps N`, the video stage trained for N
steps from one shared T2I run and evaluated on the test split (all captions, and the
fast-motion ones where keyframes alias the motion). The `keyframes_tsr` variant (the keyframes +
temporal super-resolution cascade) reports both of its models summed and splits the same steps
between them (`sweep.keyframe_step_fraction`). Writes `results.csv`,
`results.md`, `flops_vs_frames.png`, `memory_vs_frames.png`, `quality.png` and
`sweep_config.json` into `--workdir`. Re-running the same command resumes.
Needs the `plot` extra (`pip install -e ".[plot]"`, matplotlib) for the plots.
Overrides: `--sweep.frames=(16,32)`, `--sweep.base.stage.video.global_batch_size=4`,
`--only=stunet,no_temporal_downsampling`.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli

_SWEEP = config_flags.DEFINE_config_file("sweep", None, "Sweep config file.",
                                         lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory (resumed if it exists).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 0, "Train every variant's video stage for "
                                    "this many steps and evaluate it (0 = analysis only).")
_ONLY = flags.DEFINE_list("only", [], "Run only these variants (names from the sweep config).")
_CPU_DEVICES = cli.define_cpu_devices("training on a local mesh")
flags.mark_flags_as_required(["sweep", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.init(_CPU_DEVICES.value)
  try:
    import matplotlib  # pylint: disable=unused-import
  except ImportError:
    # Fail before minutes of compiling, not at the end when the plots are drawn.
    raise SystemExit("error: ablate.py draws its plots with matplotlib: "
                     "pip install 'stunet[plot]'") from None
  from stunet.apps import ablation_sweep

  sweep = _SWEEP.value
  if _ONLY.value:
    known = [v[0] for v in sweep.variants]
    unknown = sorted(set(_ONLY.value) - set(known))
    if unknown:
      raise app.UsageError(f"--only: unknown variants {unknown}; the sweep has {known}")
    sweep.variants = tuple(v for v in sweep.variants if v[0] in _ONLY.value)
  if _TRAIN_STEPS.value < 0:
    raise app.UsageError(f"--train_steps must be >= 0, got {_TRAIN_STEPS.value}")
  runner = ablation_sweep.Sweep(sweep, _WORKDIR.value)
  runner.run_analysis()
  if _TRAIN_STEPS.value:
    runner.run_training(_TRAIN_STEPS.value, sweep.eval_prompts)
  paths = runner.write_outputs()
  with open(paths["markdown"], encoding="utf-8") as f:
    print(f.read())
  for name, path in sorted(paths.items()):
    print(f"{name}: {path}")


if __name__ == "__main__":
  cli.run(main)
