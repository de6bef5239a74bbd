"""`shapes_video`: the embedded procedural text-to-video dataset (TFDS, ArrayRecord, no TF).

Our default training data and motion benchmark (SPEC §1): one or two shapes moving slowly or
quickly, or bouncing, with captions from templates (`captions`), ground-truth attributes and
per-frame positions for evaluation, and held-out (colour, shape, motion) triples that occur
only in the test split (listed in the dataset's metadata). Speeds and the aliasing guarantee
are documented in `shapes_scene`.

Configs (names are `r{resolution}_f{frames}_fps{fps}` and `image_r{resolution}`):
  * `demo`: 32x32, 16 frames at 16 fps; builds in seconds on 2 cores.
  * `tiny`: 16x16, 8 frames at 16 fps, a few dozen clips; for tests.
  * every resolution in (32, 64, 128) x frames in (16, 32, 80) x fps in (8, 16, 32).
  * `image_r{32,64,128}` and `image_tiny`: single frames with motion-free captions (T2I stage).

Build with ``python -m experiments.build_data --dataset=shapes_video --config=demo
--data_dir=DIR``.

Every example is generated from its own seed ``(config seed, split, index)``, so builds are
deterministic and independent of generation order.
"""

from __future__ import annotations

import dataclasses
import itertools

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from stunet.data import captions
from stunet.data import shapes_render
from stunet.data import shapes_scene

_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(eq=False, kw_only=True)
class ShapesVideoConfig(tfds.core.BuilderConfig):
  """Clip geometry and split sizes of one `shapes_video` variant.

  Attributes:
    resolution: frame height and width in pixels.
    frames: frames per clip (1 for the image variant).
    fps: frames per second the motion is sampled at.
    image: single frames with motion-free captions instead of clips.
    num_train / num_validation / num_test: examples per split.
    seed: base seed of the procedural generator.
  """
  resolution: int = 32
  frames: int = 16
  fps: int = 16
  image: bool = False
  num_train: int = 4096
  num_validation: int = 256
  num_test: int = 256
  seed: int = 0


def _video_config(resolution: int, frames: int, fps: int) -> ShapesVideoConfig:
  # Larger clips get fewer examples so a full build stays within a few GB.
  num_train = {32: 20000, 64: 10000, 128: 2000}[resolution]
  if frames == 80:
    num_train //= 2
  return ShapesVideoConfig(
      name=f"r{resolution}_f{frames}_fps{fps}",
      description=f"{resolution}x{resolution}, {frames} frames at {fps} fps.",
      resolution=resolution, frames=frames, fps=fps, num_train=num_train,
      num_validation=max(256, num_train // 20), num_test=max(256, num_train // 20))


def _image_config(resolution: int) -> ShapesVideoConfig:
  return ShapesVideoConfig(
      name=f"image_r{resolution}",
      description=f"{resolution}x{resolution} single frames with motion-free captions.",
      resolution=resolution, frames=1, image=True, num_train=50000, num_validation=1000,
      num_test=1000)


BUILDER_CONFIGS = [
    ShapesVideoConfig(name="demo", description="Demo size: 32x32, 16 frames at 16 fps.",
                      resolution=32, frames=16, fps=16, num_train=4096, num_validation=256,
                      num_test=256),
    ShapesVideoConfig(name="tiny", description="Test size: 16x16, 8 frames at 16 fps.",
                      resolution=16, frames=8, fps=16, num_train=48, num_validation=16,
                      num_test=16),
    ShapesVideoConfig(name="image_tiny", description="Test size images: 16x16.",
                      resolution=16, frames=1, image=True, num_train=48, num_validation=16,
                      num_test=16),
    *[_video_config(r, f, fps) for r, f, fps in itertools.product(
        (32, 64, 128), (16, 32, 80), (8, 16, 32))],
    *[_image_config(r) for r in (32, 64, 128)],
]


def metadata(config: ShapesVideoConfig) -> dict:
  """Vocabularies, held-out triples and speeds; stored as the dataset's metadata.json."""
  r, fps = config.resolution, config.fps
  return {
      "fps": fps,
      "image": config.image,
      "shapes": list(shapes_scene.SHAPES),
      "colours": list(shapes_scene.COLOUR_NAMES),
      "sizes": list(shapes_scene.SIZES),
      "motions": list(shapes_scene.MOTIONS),
      "speeds": list(shapes_scene.SPEEDS),
      "held_out_combinations": [
          {"colour": c, "shape": s, "motion": m} for c, s, m in shapes_scene.HELD_OUT],
      "linear_speed_px_per_frame": {
          s: shapes_scene.speed_px_per_frame(s, r, fps) for s in shapes_scene.SPEEDS},
      "bounce_period_frames": {
          s: shapes_scene.bounce_period_frames(s, fps) for s in shapes_scene.SPEEDS},
      "position_convention": "object centre (x right, y down) in pixels; pixel (i, j) "
                             "spans [j, j+1) x [i, i+1)",
  }


def generate_example(config: ShapesVideoConfig, split: str, index: int) -> dict:
  """The example `index` of `split`, as the numpy feature dict the builder stores."""
  rng = np.random.default_rng([config.seed, _SPLIT_IDS[split], index])
  objects = shapes_scene.sample_objects(rng, split)
  r = config.resolution
  positions = shapes_scene.scene_positions(objects, rng, config.frames, r, config.fps,
                                           image=config.image)  # n t 2
  frames = shapes_render.render(objects, positions, r)  # t h w c
  text = captions.caption(objects, rng, with_motion=not config.image)

  pad = shapes_scene.MAX_OBJECTS - len(objects)

  def attribute(name: str) -> np.ndarray:
    return np.asarray([getattr(o, name) for o in objects] + [-1] * pad, np.int32)

  padded_positions = np.concatenate(
      [positions, np.full((pad,) + positions.shape[1:], np.nan, np.float32)])
  example = {
      "caption": text,
      "num_objects": np.int32(len(objects)),
      **{name: attribute(name) for name in ("shape", "colour", "size", "motion", "speed")},
  }
  if config.image:
    example["image"] = frames[0]
    example["positions"] = padded_positions[:, 0]
  else:
    example["video"] = frames
    example["positions"] = padded_positions
  return example


class ShapesVideo(tfds.core.GeneratorBasedBuilder):
  """Procedural captioned clips of moving shapes (see the module docstring)."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "First release.",
      "2.0.0": "Readable shapes: size radii 0.18 / 0.23 of the frame (were 0.09 / 0.15) and the "
               "circle inscribed in the square, so the shapes differ in >= 17 px at 32 px; "
               "objects placed apart where their paths allow; quick bounce period 0.3125 s "
               "(was 0.25 s: 2 frames at 8 fps). Same objects, captions, splits and held-out "
               "triples per seed; different pixels and positions.",
  }
  BUILDER_CONFIGS = BUILDER_CONFIGS

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  # TFDS finds a builder's source file through `importlib_resources`, which it only requires
  # on Python < 3.9; the path is only used to look for (absent) checksum files.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    n, r = shapes_scene.MAX_OBJECTS, c.resolution
    attributes = {name: tfds.features.Tensor(shape=(n,), dtype=np.int32)
                  for name in ("shape", "colour", "size", "motion", "speed")}
    if c.image:
      pixels = {"image": tfds.features.Tensor(shape=(r, r, 3), dtype=np.uint8,
                                              encoding="zlib")}
      positions = tfds.features.Tensor(shape=(n, 2), dtype=np.float32)
    else:
      pixels = {"video": tfds.features.Tensor(shape=(c.frames, r, r, 3), dtype=np.uint8,
                                              encoding="zlib")}
      positions = tfds.features.Tensor(shape=(n, c.frames, 2), dtype=np.float32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            **pixels,
            "caption": tfds.features.Text(),
            "num_objects": tfds.features.Scalar(dtype=np.int32),
            "positions": positions,
            **attributes,
        }),
        metadata=tfds.core.MetadataDict(metadata(c)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Procedural: nothing to download.
    c = self.builder_config
    return {
        "train": self._generate_examples("train", c.num_train),
        "validation": self._generate_examples("validation", c.num_validation),
        "test": self._generate_examples("test", c.num_test),
    }

  def _generate_examples(self, split: str, count: int):
    for index in range(count):
      yield index, generate_example(self.builder_config, split, index)
