r"""The quick-start main job: builds the data, trains T2I then the STUNet, samples, evaluates.

  pip install -e . && python -m experiments.main

On the embedded default (`experiments/configs/quickstart.py`, 8 frames of 32x32
`shapes_video`) this builds the data into `data/`, trains the T2I U-Net and then the inflated
STUNet's temporal layers on the local CPU devices into `runs/quickstart/`, samples the showcase
prompts and 32 test-split captions (held-out colour/shape/motion combinations), evaluates them
with the analytic detector and prints where the videos, contact sheets, XT slices and metrics
are. About 15 minutes on 2 CPU cores; a re-run resumes (a finished run only reports).

Any config and field can be swapped: `--config=experiments/configs/tiny.py`,
`--config.stage.video.num_steps=300`, `--workdir=runs/other`.
"""

import os

from absl import app
from absl import flags

from experiments import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs",
                               "quickstart.py")
_CONFIG = cli.define_config_file("config", _DEFAULT_CONFIG, "Experiment config file.",
                                 lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Run directory (resumed if it "
                               "exists).")
_NUM_EVAL_PROMPTS = flags.DEFINE_integer("num_eval_prompts", 32, "Test-split captions sampled "
                                         "for the metrics (0 = the whole split).")
_NUM_SHOWCASE = flags.DEFINE_integer("num_showcase_samples", 2, "Clips per showcase prompt "
                                     "(config.sample.prompts); 0 = none.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume even if model/text/diffusion/data fields differ from the checkpoint's.")
_CPU_DEVICES = cli.define_cpu_devices()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.init(_CPU_DEVICES.value)
  from stunet.apps import main_job
  from stunet.train import loop

  options = main_job.MainJobOptions(num_showcase_samples=_NUM_SHOWCASE.value,
                                    num_eval_prompts=_NUM_EVAL_PROMPTS.value, seed=_SEED.value)
  try:
    summary = main_job.run_main_job(_CONFIG.value, _WORKDIR.value, options,
                                    allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except loop.NonFiniteLossError as e:
    # The run failed, not its input (cli.run reports those): status 1.
    raise SystemExit(f"error: {cli.one_line(str(e))}") from None
  print(main_job.report(summary))


if __name__ == "__main__":
  cli.run(main)
