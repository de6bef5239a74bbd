"""Defaults of the ``data`` config section (the input pipeline of SPEC §2-§4 training).

``data_config(variant)`` returns the section that `stunet.data.pipeline.make_train_iterator`
reads. Experiment configs embed it as ``config.data = data_config("demo")`` and override
fields (``--config.data.global_batch_size=64``).
"""

from __future__ import annotations

import ml_collections

# variant -> (builder config, frames, resolution, fps, global batch size)
_VARIANTS = {
    "tiny": ("tiny", 8, 16, 16, 8),
    "tiny_image": ("image_tiny", 1, 16, 16, 8),
    "demo": ("demo", 16, 32, 16, 32),
    "demo_image": ("image_r32", 1, 32, 16, 64),
    "base": ("r64_f32_fps16", 32, 64, 16, 64),
    "paper": ("r128_f80_fps16", 80, 128, 16, 256),
}


def data_config(variant: str = "demo") -> ml_collections.ConfigDict:
  """The ``data`` section for `variant` (one of tiny, tiny_image, demo, demo_image, base, paper).

  Fields:
    dataset: TFDS dataset name (``shapes_video`` or ``video_folder``).
    builder_config: TFDS builder config name (e.g. ``demo``).
    data_dir: TFDS data directory the dataset was built into.
    files: optional glob of ArrayRecord files to read instead of ``split`` (features are
      read from the dataset directory holding the files).
    split: TFDS split (slicing such as ``train[:90%]`` is not supported; use splits).
    modality: ``video`` (batches carry ``video`` [b t h w 3]) or ``image`` (``image``
      [b h w 3]; from a video dataset one random frame per clip).
    global_batch_size: examples per step over all processes.
    frames: frames per clip after temporal sampling (None: all stored frames at ``fps``).
    resolution: output height and width (None: stored size); smaller than stored crops.
    fps: target frame rate; the pipeline samples every ``stored fps / fps`` frame, which
      must be an integer (None: stored fps).
    random_crop: random spatial crop to ``resolution`` (otherwise a centre crop).
    flip: random horizontal flips, swapping left/right in captions (off: captions name
      directions, so flipping needs the swap to stay truthful).
    seed: shuffle and augmentation seed.
    shuffle: globally shuffle the split each epoch (grain index shuffle, so no buffer).
    num_epochs: None repeats forever (training).
    worker_count: grain worker processes (0 = in-process, used in CI).
    read_threads: threads reading and decoding records.
    prefetch_batches: batches prefetched ahead of the train step.
    batch_axes: mesh axes the batch dimension is sharded over (those present in the mesh).
  """
  if variant not in _VARIANTS:
    raise ValueError(f"unknown data variant {variant!r}; expected one of {sorted(_VARIANTS)}")
  builder_config, frames, resolution, fps, batch = _VARIANTS[variant]
  c = ml_collections.ConfigDict()
  c.dataset = "shapes_video"
  c.builder_config = builder_config
  c.data_dir = "data"
  c.files = ""
  c.split = "train"
  c.modality = "image" if variant.endswith("image") else "video"
  c.global_batch_size = batch
  c.frames = ml_collections.FieldReference(frames, field_type=int)
  c.resolution = ml_collections.FieldReference(resolution, field_type=int)
  c.fps = ml_collections.FieldReference(fps, field_type=int)
  c.random_crop = False
  c.flip = False
  c.seed = 0
  c.shuffle = True
  c.num_epochs = ml_collections.FieldReference(None, field_type=int)
  c.worker_count = 0
  c.read_threads = 4
  c.prefetch_batches = 2
  c.batch_axes = ("data", "fsdp")
  return c
