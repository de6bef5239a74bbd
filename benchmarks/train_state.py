"""Bytes of a stage's train state: per chip on a TPU slice, and per checkpoint.

Nothing is compiled: the state's shapes and shardings come from `jax.eval_shape` and the
config's mesh over the slice's compile-only devices (as `experiments.aot_check` builds them),
so `paper` at pod scale is measured in seconds on a CPU host. It splits the state into
trainable and frozen parameters (the frozen ones: the T2I weights in the video stage, a
pre-trained text encoder everywhere), optimiser moments and EMA, and reports what a
checkpoint writes (`StageSetup.saved_state`: no EMA of frozen leaves, no pre-trained text
encoder).

  JAX_PLATFORMS=cpu python -m benchmarks.train_state --config=experiments/configs/paper.py \\
      --topology=v5p-128
"""

from __future__ import annotations

import math
import os
import platform

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_TOPOLOGY = flags.DEFINE_string("topology", "v5p-128", "TPU slice, e.g. v5p-128, v5e-256.")
_STAGE = flags.DEFINE_string("stage", "video", "Training stage whose state is measured.")
_T5_ARCHITECTURE = flags.DEFINE_string("t5_architecture", "t5-v1_1-xxl",
                                       "T5 built when text.kind='t5' has no text.t5_dir.")
flags.mark_flags_as_required(["config"])

MIB = 2**20


def _total(tree) -> int:
  """Bytes of every array in `tree`, over all devices' shards without copies."""
  import jax  # pylint: disable=g-import-not-at-top
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def measure(config, topology_name: str, stage: str, t5_architecture: str) -> list[tuple]:
  """Rows `(what, bytes per chip, bytes in total)` of the state's parts."""
  import jax  # pylint: disable=g-import-not-at-top
  from stunet.apps import aot  # pylint: disable=g-import-not-at-top
  from stunet.train import optimizer as optimizer_lib  # pylint: disable=g-import-not-at-top
  topology = aot.parse_topology(topology_name)
  setup, _, _, state = aot.abstract_setup(config, topology, stage, t5_architecture)
  labels = setup.labels

  def part(labels, tree, label):
    return jax.tree.map(lambda l, x: x if l == label else None, labels, tree)
  frozen = optimizer_lib.FROZEN
  rows = [
      ("params: trainable", part(labels, state.params, optimizer_lib.TRAIN)),
      ("params: frozen U-Net", part(labels["unet"], state.params["unet"], frozen)),
      ("params: frozen text encoder", part(labels["text"], state.params["text"], frozen)),
      ("optimiser moments", state.opt_state),
      ("EMA", state.ema_params),
      ("train state", state),
      ("checkpoint (written)", setup.saved_state(state)),
  ]
  return [(name, aot.shard_bytes(tree), _total(tree)) for name, tree in rows]


def main(argv):
  del argv
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  config = _CONFIG.value
  rows = measure(config, _TOPOLOGY.value, _STAGE.value, _T5_ARCHITECTURE.value)
  print(f"# train state of {_STAGE.value!r} on {_TOPOLOGY.value}, mesh "
        f"{tuple(config.mesh.axes)}={tuple(config.mesh.shape)} (shapes only, nothing compiled; "
        f"host {platform.machine()}, {os.cpu_count()} cores)")
  print("| part | per chip (MiB) | total (MiB) |")
  print("|---|---|---|")
  for name, per_chip, total in rows:
    print(f"| {name} | {per_chip / MIB:,.2f} | {total / MIB:,.2f} |")


if __name__ == "__main__":
  app.run(main)
