"""`video_folder`: a TFDS builder (ArrayRecord, no TF) for a directory of videos + captions CSV.

Brings users' own captioned videos to the training pipeline (SPEC §2). Every video is decoded
with PyAV at the config's fps, its shorter side resized to the resolution and centre-cropped,
then cut into clips of ``frames`` frames starting every ``clip_stride`` frames.

Captions CSV (UTF-8, header row, WebVid-style names accepted, case-insensitive):
  * file column, first of: file, path, filename, video, video_path, videoid, video_id, id.
    Values are paths relative to ``video_dir`` or bare names; a value without extension
    (WebVid's ``videoid``) matches the file with that stem.
  * caption column, first of: caption, text, name (WebVid), title, description.

Unusable videos are skipped, never fatal, and counted per reason in the build report
(``metadata.json`` -> ``build_report``, also on ``builder.build_report``):
  empty (0 bytes), corrupt (FFmpeg cannot open or decode it, e.g. truncated), unreadable
  (no video stream, permission denied, a symlink loop, a directory named like a video, a
  subdirectory that cannot be listed), too_short (fewer than ``frames`` frames at the target
  fps), no_caption (no or blank caption), missing (listed in the CSV but not on disk, or
  deleted between the scan and the read).

Build with ``python -m experiments.build_data --dataset=video_folder --config=NAME
--video_dir=DIR --captions_csv=FILE --data_dir=DATA``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import zlib

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from stunet.data import video_decode

FILE_COLUMNS = ("file", "path", "filename", "video", "video_path", "videoid", "video_id", "id")
CAPTION_COLUMNS = ("caption", "text", "name", "title", "description")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".gif")
SKIP_REASONS = ("empty", "corrupt", "unreadable", "too_short", "no_caption", "missing")
# File names listed per skip reason in the report.
REPORT_EXAMPLES = 5


@dataclasses.dataclass(eq=False, kw_only=True)
class VideoFolderConfig(tfds.core.BuilderConfig):
  """Where the videos are and how clips are cut.

  Attributes:
    video_dir: directory searched recursively for videos.
    captions_csv: the captions CSV (see the module docstring for columns).
    resolution: output height and width.
    frames: frames per clip.
    fps: frames per second clips are sampled at.
    clip_stride: frames between the starts of consecutive clips of one video.
    max_clips_per_video: keep at most this many clips per video (0 = all).
    validation_fraction: fraction of videos (by a hash of their path) put in `validation`.
  """
  video_dir: str = ""
  captions_csv: str = ""
  resolution: int = 64
  frames: int = 16
  fps: int = 16
  clip_stride: int = 16
  max_clips_per_video: int = 0
  validation_fraction: float = 0.0


def _pick_column(header: list[str], accepted: tuple[str, ...], kind: str, path: str) -> str:
  lowered = {h.strip().lower(): h for h in header}
  for name in accepted:
    if name in lowered:
      return lowered[name]
  raise ValueError(f"captions CSV {path} has no {kind} column: header is {header}, accepted "
                   f"names are {list(accepted)}")


def read_captions(path: str) -> dict[str, str]:
  """Maps each CSV file value (path, name or extension-less id) to its caption."""
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    file_column = _pick_column(header, FILE_COLUMNS, "file", path)
    caption_column = _pick_column(header, CAPTION_COLUMNS, "caption", path)
    return {row[file_column].strip(): (row[caption_column] or "").strip()
            for row in reader if row.get(file_column)}


def _caption_keys(relative_path: str) -> list[str]:
  name = os.path.basename(relative_path)
  return [relative_path, name, os.path.splitext(relative_path)[0], os.path.splitext(name)[0]]


class BuildReport:
  """Counts of used and skipped videos, with the first few skipped names per reason."""

  def __init__(self):
    self.videos = 0
    self.clips = 0
    self.skipped = collections.Counter()
    self.examples = collections.defaultdict(list)

  def skip(self, reason: str, name: str, detail: str = ""):
    self.skipped[reason] += 1
    if len(self.examples[reason]) < REPORT_EXAMPLES:
      self.examples[reason].append(name)
    logging.warning("skipping %s (%s) %s", name, reason, detail)

  def as_dict(self) -> dict:
    return {"videos": self.videos, "clips": self.clips,
            "skipped": {r: self.skipped[r] for r in SKIP_REASONS},
            "skipped_examples": {r: list(self.examples[r]) for r in SKIP_REASONS}}

  def summary(self) -> str:
    skipped = ", ".join(f"{r}: {self.skipped[r]} ({', '.join(self.examples[r])})"
                        for r in SKIP_REASONS if self.skipped[r])
    return (f"{self.videos} videos -> {self.clips} clips; skipped "
            f"{sum(self.skipped.values())}" + (f" [{skipped}]" if skipped else ""))


def check_config(c: VideoFolderConfig) -> None:
  """Raises naming the field of a config that cannot build (before TFDS starts writing)."""
  for field, value in (("video_dir", c.video_dir), ("captions_csv", c.captions_csv)):
    if not value:
      raise ValueError(f"VideoFolderConfig.{field} is required")
  if not os.path.isdir(c.video_dir):
    raise FileNotFoundError(f"VideoFolderConfig.video_dir={c.video_dir!r} is not a directory")
  if not os.path.isfile(c.captions_csv):
    raise FileNotFoundError(f"VideoFolderConfig.captions_csv={c.captions_csv!r} is not a file")
  if c.frames < 1 or c.clip_stride < 1 or c.fps <= 0 or c.resolution < 1:
    raise ValueError(f"bad clip geometry: frames={c.frames}, clip_stride={c.clip_stride}, "
                     f"fps={c.fps}, resolution={c.resolution}")


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Clips from a folder of captioned videos (see the module docstring).

  Pass a `VideoFolderConfig` as ``config=``; its name becomes the dataset directory name.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self.build_report = BuildReport()

  # TFDS finds a builder's source file through `importlib_resources`, which it only requires
  # on Python < 3.9; the path is only used to look for (absent) checksum files.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    if not isinstance(c, VideoFolderConfig):
      raise ValueError("video_folder needs config=VideoFolderConfig(name=..., video_dir=..., "
                       "captions_csv=...)")
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=(c.frames, c.resolution, c.resolution, 3),
                                          dtype=np.uint8, encoding="zlib"),
            "caption": tfds.features.Text(),
            "source_file": tfds.features.Text(),
            "start_frame": tfds.features.Scalar(dtype=np.int32),
        }),
        metadata=tfds.core.MetadataDict({
            "fps": c.fps, "resolution": c.resolution, "frames": c.frames,
            "clip_stride": c.clip_stride, "file_columns": list(FILE_COLUMNS),
            "caption_columns": list(CAPTION_COLUMNS)}),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    c = self.builder_config
    check_config(c)
    captions = read_captions(c.captions_csv)
    on_disk, not_files = self._scan(c.video_dir)
    matched = set()
    for relative in not_files:
      matched.update(_caption_keys(relative))  # on disk, so not also "missing"
      self.build_report.skip("unreadable", relative, "is a directory, not a video file")
    videos = []
    for relative in on_disk:
      key = next((k for k in _caption_keys(relative) if k in captions), None)
      if key is None or not captions[key]:
        self.build_report.skip("no_caption", relative)
        continue
      matched.add(key)
      videos.append((relative, captions[key]))
    for key in sorted(set(captions) - matched):
      if key and not any(key in _caption_keys(v) for v, _ in videos):
        self.build_report.skip("missing", key)

    def is_validation(relative: str) -> bool:
      return zlib.crc32(relative.encode("utf-8")) / 2**32 < c.validation_fraction

    splits = {"train": [v for v in videos if not is_validation(v[0])]}
    if c.validation_fraction > 0:
      splits["validation"] = [v for v in videos if is_validation(v[0])]
    return {name: self._generate_examples(items) for name, items in splits.items()}

  def _scan(self, video_dir: str) -> tuple[list[str], list[str]]:
    """(video files, directories named like videos) under `video_dir`, relative, sorted.

    A subdirectory that cannot be listed is skipped as unreadable (os.walk would drop it
    silently); the folder itself must be listable. Symlinked directories are not followed
    (a link back up the tree would loop), which also keeps a looping file symlink out of
    the directories: it is listed as a file and skipped when it is read.
    """
    def unlistable(e: OSError):
      if os.path.abspath(e.filename or "") == os.path.abspath(video_dir):
        raise e
      relative = os.path.relpath(e.filename, video_dir) if e.filename else "?"
      self.build_report.skip("unreadable", relative, f"cannot list directory: {e.strerror}")

    files, directories = [], []
    for root, dirs, names in os.walk(video_dir, onerror=unlistable):
      for name, out in [(n, files) for n in names] + [(d, directories) for d in dirs]:
        if name.lower().endswith(VIDEO_EXTENSIONS):
          out.append(os.path.relpath(os.path.join(root, name), video_dir))
    return sorted(files), sorted(directories)

  def _generate_examples(self, videos: list[tuple[str, str]]):
    c = self.builder_config
    max_frames = None
    if c.max_clips_per_video:
      max_frames = (c.max_clips_per_video - 1) * c.clip_stride + c.frames
    for relative, text in videos:
      path = os.path.join(c.video_dir, relative)
      try:
        frames = video_decode.decode_at_fps(path, c.fps, c.resolution, max_frames)
      except video_decode.VideoDecodeError as e:
        self.build_report.skip(e.reason, relative, str(e))
        continue
      if len(frames) < c.frames:
        self.build_report.skip("too_short", relative,
                               f"{len(frames)} frames at {c.fps} fps < {c.frames}")
        continue
      self.build_report.videos += 1
      for start in range(0, len(frames) - c.frames + 1, c.clip_stride):
        self.build_report.clips += 1
        yield f"{relative}:{start}", {
            "video": frames[start:start + c.frames], "caption": text,
            "source_file": relative, "start_frame": np.int32(start)}
    # Written into metadata.json, which TFDS saves after all splits are generated.
    self.info.metadata["build_report"] = self.build_report.as_dict()
