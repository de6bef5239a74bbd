r"""Checks that a config's train step fits a TPU slice by compiling it for that slice, on CPU.

Needs libtpu (`pip install -e .[tpu]`); no TPU is used. Compiles the real sharded train step of
the stage (default: video), or with `--what=sample` one denoising step of sampling, for the
topology's devices and prints, per device: parameter, optimiser and EMA bytes, temporaries,
peak memory against the chip's HBM, FLOPs per step and the predicted step time at the chip's
peak bf16 FLOP/s and at 50% of it. Exits with status 1 (saying by how much and which levers to
pull) when the step does not fit.

A frozen T5 text encoder (`text.kind='t5'`, as in the paper config) is compiled from its
architecture alone when `text.t5_dir` is unset (`--t5_architecture`, default T5-v1.1-XXL): no
weights or tokenizer are read, since only shapes matter to the compiler.

  python -m experiments.aot_check --config=experiments/configs/base.py --topology=v5p-128
  python -m experiments.aot_check --config=experiments/configs/base.py --topology=v5e-256 \
      --config.data.global_batch_size=256
  python -m experiments.aot_check --config=experiments/configs/paper.py --topology=v5p-128 \
      --what=sample
  python -m experiments.aot_check --config=experiments/configs/tiny.py --topology=v5e-4 \
      --num_slices=2 --config.mesh.shape='(2,4,1)' --config.mesh.dcn_shape='(2,1,1)'

With `--num_slices=N` the devices of N slices form a hybrid mesh: `mesh.dcn_shape` says how many
slices each mesh axis spans (default: all along the first axis, `data`).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_TOPOLOGY = flags.DEFINE_string(
    "topology", "v5p-128", "Cloud TPU accelerator type: v4-N, v5p-N (N TensorCores), "
    "v5e-N / v5litepod-N, v6e-N (N chips).")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "Slices joined over DCN (multi-slice).")
_STAGE = flags.DEFINE_string("stage", "video", "Training stage whose step is compiled.")
_WHAT = flags.DEFINE_enum(
    "what", "train", ["train", "sample"],
    "train: one train step. sample: one guided denoising step of sampling (the U-Net on the "
    "conditional + null-text batch with the EMA weights, and the sampler's update).")
_SAMPLE_BATCH = flags.DEFINE_integer(
    "sample_batch", 0, "--what=sample: clips sampled at once (0: one per data-parallel device).")
_T5_ARCHITECTURE = flags.DEFINE_string(
    "t5_architecture", "t5-v1_1-xxl",
    "With text.kind='t5' and no text.t5_dir: the frozen T5 encoder compiled into the step, "
    "built from this Hugging Face T5 v1.1 architecture (t5-v1_1-small/base/large/xl/xxl) with "
    "no weights or tokenizer read from disk; only its shapes matter to the compiler.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  # The TPU devices are compile-only; everything that runs, runs on the CPU.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  # Compile-only use touches no chip, so it need not hold libtpu's one-process lock.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from stunet.apps import aot  # after the environment is set: it imports JAX

  try:
    topology = aot.parse_topology(_TOPOLOGY.value, _NUM_SLICES.value)
    if _WHAT.value == "sample":
      report = aot.check_sample_step(_CONFIG.value, topology, stage=_STAGE.value,
                                     t5_architecture=_T5_ARCHITECTURE.value,
                                     batch_size=_SAMPLE_BATCH.value)
    else:
      report = aot.check_train_step(_CONFIG.value, topology, stage=_STAGE.value,
                                    t5_architecture=_T5_ARCHITECTURE.value)
  except RuntimeError as e:
    # A compile that failed for this slice (cli.run reports bad input): status 1.
    raise SystemExit(f"error: {cli.one_line(str(e))}") from None
  print(aot.format_report(report, _CONFIG.value), flush=True)
  if not report.fits:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
