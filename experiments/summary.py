r"""Prints parameter counts (spatial / temporal) and forward FLOPs of a config's models.

No weights are allocated (abstract shapes only), so every config, `paper` included, runs on a
laptop CPU in seconds:

  python -m experiments.summary --config=experiments/configs/demo.py
  python -m experiments.summary --config=experiments/configs/paper.py --config.data.frames=16
"""

from absl import flags
from ml_collections import config_flags

from experiments import cli
from stunet.nn import summary

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size the FLOPs are counted for.")


def main(argv):
  del argv
  config_path = flags.FLAGS["config"].config_filename
  print(summary.format_summary(summary.summarize(_CONFIG.value, config_path, _BATCH.value)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
