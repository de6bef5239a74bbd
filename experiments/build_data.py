"""Builds a TFDS dataset for training (ArrayRecord files, no TensorFlow needed).

The embedded procedural dataset (demo size builds in seconds):
  python -m experiments.build_data --dataset=shapes_video --config=demo --data_dir=data

Your own captioned videos (needs ``pip install "stunet[video]"``):
  python -m experiments.build_data --dataset=video_folder --config=my_videos \
    --video_dir=videos/ --captions_csv=captions.csv --resolution=64 --frames=16 --fps=16 \
    --data_dir=data

Training then reads ``data_dir`` with ``config.data.dataset`` / ``config.data.builder_config``.
"""

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from experiments import cli
from stunet.data import shapes_video
from stunet.data import video_folder

_DATASET = flags.DEFINE_enum("dataset", "shapes_video", ["shapes_video", "video_folder"],
                             "Which builder to run.")
_CONFIG = flags.DEFINE_string(
    "config", "demo", "Builder config: a shapes_video config name (demo, tiny, r64_f32_fps16, "
    "image_r32, ...) or the name to give a video_folder dataset.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data", "TFDS data directory to write into.")
_VIDEO_DIR = flags.DEFINE_string("video_dir", None, "video_folder: directory of videos.")
_CAPTIONS_CSV = flags.DEFINE_string("captions_csv", None, "video_folder: captions CSV.")
_RESOLUTION = flags.DEFINE_integer("resolution", 64, "video_folder: output height and width.")
_FRAMES = flags.DEFINE_integer("frames", 16, "video_folder: frames per clip.")
_FPS = flags.DEFINE_integer("fps", 16, "video_folder: frames per second of the clips.")
_CLIP_STRIDE = flags.DEFINE_integer("clip_stride", 16,
                                    "video_folder: frames between consecutive clip starts.")
_MAX_CLIPS = flags.DEFINE_integer("max_clips_per_video", 0,
                                  "video_folder: at most this many clips per video (0 = all).")
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.0, "video_folder: fraction of videos in the validation split.")


def _builder() -> tfds.core.DatasetBuilder:
  if _DATASET.value == "shapes_video":
    names = [c.name for c in shapes_video.BUILDER_CONFIGS]
    if _CONFIG.value not in names:
      raise app.UsageError(f"--config={_CONFIG.value!r} is not a shapes_video config; "
                           f"choose from {names}")
    return shapes_video.ShapesVideo(config=_CONFIG.value, data_dir=_DATA_DIR.value)
  if not _VIDEO_DIR.value or not _CAPTIONS_CSV.value:
    raise app.UsageError("--dataset=video_folder needs --video_dir and --captions_csv")
  config = video_folder.VideoFolderConfig(
      name=_CONFIG.value, video_dir=_VIDEO_DIR.value, captions_csv=_CAPTIONS_CSV.value,
      resolution=_RESOLUTION.value, frames=_FRAMES.value, fps=_FPS.value,
      clip_stride=_CLIP_STRIDE.value, max_clips_per_video=_MAX_CLIPS.value,
      validation_fraction=_VALIDATION_FRACTION.value)
  video_folder.check_config(config)  # bad paths fail before TFDS creates the dataset folder
  return video_folder.VideoFolder(config=config, data_dir=_DATA_DIR.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  tfds.display_progress_bar(True)
  builder = _builder()
  builder.download_and_prepare()
  logging.info("built %s at %s: %s", builder.name, builder.data_dir,
               {name: split.num_examples for name, split in builder.info.splits.items()})
  print(f"Built {builder.name}/{builder.builder_config.name} at {builder.data_dir}")
  for name, split in builder.info.splits.items():
    print(f"  {name}: {split.num_examples} examples")
  if isinstance(builder, video_folder.VideoFolder):
    print("  report: " + builder.build_report.summary())


if __name__ == "__main__":
  cli.run(main)
