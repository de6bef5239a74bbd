"""Throughput of the grain input pipeline (clips/s) for a `data_config` variant.

Builds the dataset if needed (shapes_video), then times batches from
`stunet.data.pipeline.make_train_iterator` after a warm-up, with and without conversion to
global jax arrays on a mesh over all local devices. Compare with the train step's clips/s:
the pipeline must not be the bottleneck.

  python -m benchmarks.data_pipeline --variant=demo --data_dir=/tmp/stunet_data
"""

import time

from absl import app
from absl import flags
import jax

from benchmarks import common
from stunet.data import config as data_config_lib
from stunet.data import pipeline
from stunet.data import shapes_video

_VARIANT = flags.DEFINE_string("variant", "demo", "data_config variant to time.")
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/stunet_data", "TFDS data dir.")
_BATCHES = flags.DEFINE_integer("batches", 100, "Timed batches per setting.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed batches first.")
_WORKERS = flags.DEFINE_list("worker_counts", ["0"], "grain worker counts to time.")
_THREADS = flags.DEFINE_list("read_threads", ["1", "4"], "read thread counts to time.")


def _clips_per_second(config, mesh) -> float:
  iterator = pipeline.make_train_iterator(config, mesh=mesh)
  for _ in range(_WARMUP.value):
    batch = next(iterator)
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    batch = next(iterator)
  jax.block_until_ready([batch[k] for k in ("video", "image") if k in batch])
  elapsed = time.perf_counter() - start
  iterator.close()
  return _BATCHES.value * config.global_batch_size / elapsed


def main(argv):
  del argv
  config = data_config_lib.data_config(_VARIANT.value)
  config.data_dir = _DATA_DIR.value
  if config.dataset == "shapes_video":
    build_start = time.perf_counter()
    builder = shapes_video.ShapesVideo(config=config.builder_config, data_dir=config.data_dir)
    built = builder.is_prepared()
    builder.download_and_prepare()
    if not built:
      print(f"built {config.builder_config} in {time.perf_counter() - build_start:.1f} s")
  key = "image" if config.modality == "image" else "video"
  print(f"machine: {common.machine_info()}")
  print(f"variant {_VARIANT.value}: {config.builder_config}, global batch "
        f"{config.global_batch_size}, {key} frames={config.frames} "
        f"resolution={config.resolution}")
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  print("| worker_count | read_threads | output | clips/s |")
  print("|---|---|---|---|")
  for workers in _WORKERS.value:
    for threads in _THREADS.value:
      config.worker_count, config.read_threads = int(workers), int(threads)
      for name, m in (("numpy", None), (f"jax, {jax.device_count()} devices", mesh)):
        rate = _clips_per_second(config, m)
        print(f"| {workers} | {threads} | {name} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
