r"""Samples a trained run on a dataset split's captions and writes the detector metrics.

  python -m experiments.evaluate --workdir=runs/quickstart --split=test --max_prompts=32

Reads the run's `video` stage (its own `config.json`, latest checkpoint, EMA weights), samples
one clip per caption of the split (the test split includes the held-out (colour, shape,
motion) combinations; `--max_prompts` keeps up to half of them held-out), and writes
`metrics.json`, `metrics.md` and the samples into `<workdir>/eval/<split>_step<step>/`.
`--fvd` adds FVD-shapes against the split's real clips (our small 3-D conv feature network,
trained once and cached; not I3D). `--tsr_workdir` evaluates the keyframes + TSR cascade: the
`video` stage's clips are keyframes that the `tsr` stage of that run fills in
(`stunet.conditioning.keyframes_tsr`).
"""

from absl import app
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's directory.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "validation", "test"],
                           "Dataset split whose captions are sampled.")
_MAX_PROMPTS = flags.DEFINE_integer("max_prompts", 0, "Sample at most this many captions "
                                    "(0 = the whole split).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEPS = flags.DEFINE_integer("steps", None, "Denoising steps (default: the run's config).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Guidance scale (default: the run's config).")
_SAMPLER = flags.DEFINE_enum("sampler", None, ["ddpm", "ddim"], "Sampler (default: the run's "
                             "config).")
_CHECKPOINT_STEP = flags.DEFINE_integer("checkpoint_step", None, "Evaluate this saved step "
                                        "(default: the latest), e.g. for a comparison at "
                                        "equal compute.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Clips per device call (0 = all at once).")
_FVD = flags.DEFINE_bool("fvd", False, "Also compute FVD-shapes against the real clips.")
_TSR_WORKDIR = flags.DEFINE_string("tsr_workdir", None, "A run with a 'tsr' stage that fills "
                                   "in the video stage's keyframes (the keyframes + TSR "
                                   "cascade baseline).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: "
                           "<workdir>/eval/<split>_step<step>).")
_CPU_DEVICES = cli.define_cpu_devices()
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.init(_CPU_DEVICES.value)
  from stunet.eval import run_evaluation

  options = run_evaluation.EvalOptions(
      split=_SPLIT.value, max_prompts=_MAX_PROMPTS.value, seed=_SEED.value, steps=_STEPS.value,
      guidance=_GUIDANCE.value, sampler=_SAMPLER.value, batch_size=_BATCH_SIZE.value,
      fvd=_FVD.value, checkpoint_step=_CHECKPOINT_STEP.value)
  from stunet.sampling import sample_run
  tsr = sample_run.TSROptions(workdir=_TSR_WORKDIR.value) if _TSR_WORKDIR.value else None
  record = run_evaluation.evaluate_run(_WORKDIR.value, options, out_dir=_OUT.value, tsr=tsr)
  print(run_evaluation.to_markdown(record))
  print(f"metrics: {record['out_dir']}/metrics.json and metrics.md; "
        f"samples: {record['gallery']}")


if __name__ == "__main__":
  cli.run(main)
