"""Decoding user videos with PyAV at a target frame rate, resized and centre-cropped.

Used by the `video_folder` builder to turn arbitrary files (any codec FFmpeg reads, any fps
and size) into square uint8 clips for training (SPEC §2). PyAV is the optional ``video`` extra
and is imported only when a video is decoded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class VideoDecodeError(Exception):
  """A video that cannot be used; `reason` is one of empty, unreadable, corrupt, missing."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def import_av():
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('Decoding video files needs PyAV: pip install "stunet[video]"') from e
  return av


def resize_and_centre_crop(image: Image.Image, resolution: int) -> np.ndarray:
  """Scales the shorter side to `resolution`, then crops the centre square; [h w c] uint8."""
  w, h = image.size
  scale = resolution / min(w, h)
  new_w, new_h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
  image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
  left, top = (new_w - resolution) // 2, (new_h - resolution) // 2
  return np.asarray(image.crop((left, top, left + resolution, top + resolution)), np.uint8)


def check_readable(path: str) -> None:
  """Raises VideoDecodeError unless `path` is a non-empty file this process can read.

  A folder of user files holds whatever a file system can: symlink loops (ELOOP),
  unreadable files (EACCES), directories named `*.mp4`, files deleted between the scan and
  the read. Opening the file once here turns each into a reason the build report counts,
  instead of an OSError that ends the build.
  """
  try:
    with open(path, "rb") as f:
      if not f.read(1):
        raise VideoDecodeError("empty", f"{path} is empty")
  except FileNotFoundError as e:
    raise VideoDecodeError("missing", f"{path} vanished before it was read ({e.strerror})") \
        from e
  except IsADirectoryError as e:
    raise VideoDecodeError("unreadable", f"{path} is a directory, not a video file") from e
  except OSError as e:
    raise VideoDecodeError("unreadable", f"{path}: {e.strerror or e}") from e


def decode_at_fps(path: str, fps: float, resolution: int,
                  max_frames: int | None = None) -> np.ndarray:
  """All frames of `path` resampled to `fps`, as ``[t, resolution, resolution, 3]`` uint8.

  The frame shown at time ``k / fps`` is the last source frame whose timestamp is not later
  (sample-and-hold), so slowing down repeats frames and speeding up drops them.

  Raises:
    VideoDecodeError: the file is empty, unreadable, corrupt or gone (see `check_readable`).
  """
  check_readable(path)
  av = import_av()
  try:
    container = av.open(path)
  except OSError as e:  # before FFmpegError: PyAV's errno errors are both
    raise VideoDecodeError("unreadable", f"{path}: {e}") from e
  except av.error.FFmpegError as e:
    raise VideoDecodeError("corrupt", f"{path}: {e}") from e
  out = []
  with container:
    if not container.streams.video:
      raise VideoDecodeError("unreadable", f"{path} has no video stream")
    stream = container.streams.video[0]
    source_rate = float(stream.average_rate or stream.guessed_rate or fps)
    held, held_image, held_time = None, None, None
    target = 0  # index of the next output frame (time target / fps)
    try:
      for index, frame in enumerate(container.decode(stream)):
        time = frame.time if frame.time is not None else index / source_rate
        # Every output time before this frame shows the previously held frame.
        while held is not None and target / fps < time - 1e-6:
          if held_image is None:
            held_image = resize_and_centre_crop(held.to_image(), resolution)
          out.append(held_image)
          target += 1
          if max_frames is not None and len(out) >= max_frames:
            return np.stack(out)
        held, held_image, held_time = frame, None, time
    except av.error.FFmpegError as e:
      raise VideoDecodeError("corrupt", f"{path}: {e}") from e
    if held is not None:
      # The last frame lasts one source frame period.
      end = held_time + 1.0 / source_rate
      while target / fps < end - 1e-6 and (max_frames is None or len(out) < max_frames):
        if held_image is None:
          held_image = resize_and_centre_crop(held.to_image(), resolution)
        out.append(held_image)
        target += 1
  if not out:
    raise VideoDecodeError("corrupt", f"{path} has no decodable frames")
  return np.stack(out)
