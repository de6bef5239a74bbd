r"""Trains the T2I U-Net, then inflates it into a STUNet and trains the temporal layers.

Quick start on CPU (builds the embedded shapes_video data on first use):
  python -m experiments.train --config=experiments/configs/demo.py --workdir=runs/demo

Overrides: `--config.stages=t2i`, `--config.model.temporal_factors=(1,2)`,
`--config.mesh.shape=(2,4,1)`, `--config.stage.video.init_from=runs/other/t2i`. Rerunning with
the same --workdir resumes. On a pod, every host runs the same command (with
`--multihost`, which calls `jax.distributed.initialize()` first). Local multi-process runs give
each process `--coordinator=localhost:PORT --num_processes=N --process_id=I` (or the
`STUNET_COORDINATOR`, `STUNET_NUM_PROCESSES`, `STUNET_PROCESS_ID` environment variables).
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumed if it exists).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume even if model/text/diffusion/data fields differ from the checkpoint's.")
_CPU_DEVICES = cli.define_cpu_devices()
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Cloud TPU VMs: call jax.distributed.initialize() first, which reads "
    "the run's layout from the TPU environment.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "Local multi-process runs: host:port of process 0 "
    "(else $STUNET_COORDINATOR).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Local multi-process runs: process count (else $STUNET_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Local multi-process runs: this process's index "
    "(else $STUNET_PROCESS_ID).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.init(_CPU_DEVICES.value)
  from stunet.parallel import distributed
  try:
    distributed.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                       _PROCESS_ID.value, multihost=_MULTIHOST.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  from stunet.train import loop

  try:
    results = loop.train(_CONFIG.value, _WORKDIR.value,
                         allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except loop.NonFiniteLossError as e:
    # The run failed, not its input: status 1, and the message as cli.fail would print it.
    logging.error("%s", e)
    raise SystemExit(f"error: {cli.one_line(str(e))}") from None
  for r in results:
    status = "preempted" if r.preempted else "done"
    print(f"stage {r.stage}: step {r.step} ({status})")


if __name__ == "__main__":
  cli.run(main)
