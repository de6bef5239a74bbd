"""Reading the user's images, videos and masks for the applications (SPEC §5).

Everything comes back at the model's size: square frames of ``resolution`` pixels and, for
videos, ``frames`` frames. Inputs of another size are resized (a warning says from what);
unreadable files and unusable contents raise `ValueError` naming the file.

- images: any format pillow reads, as float32 ``[h w 3]`` in [-1, 1];
- masks: an image whose white (>= 128 after conversion to grey) pixels mark the region;
  ``[h w]`` bool;
- videos: any file FFmpeg reads (PyAV), first ``frames`` frames, float32 ``[t h w 3]``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image


def _open_image(path: str, what: str) -> Image.Image:
  if not os.path.isfile(path):
    raise ValueError(f"{what} {path!r} does not exist")
  try:
    image = Image.open(path)
    image.load()
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read the {what} {path!r}: {e}") from None
  return image


def _resized(image: Image.Image, resolution: int, what: str, path: str,
             resample) -> Image.Image:
  if image.size != (resolution, resolution):
    warnings.warn(f"{what} {path!r} is {image.size[0]}x{image.size[1]}; resizing it to the "
                  f"model's {resolution}x{resolution}")
    image = image.resize((resolution, resolution), resample)
  return image


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
  return pixels.astype(np.float32) / 127.5 - 1.0


def read_image(path: str, resolution: int) -> np.ndarray:
  """``[resolution resolution 3]`` float32 in [-1, 1]."""
  image = _open_image(path, "image").convert("RGB")
  image = _resized(image, resolution, "image", path, Image.Resampling.BICUBIC)
  return to_unit_range(np.asarray(image, np.uint8))


def read_mask(path: str, resolution: int) -> np.ndarray:
  """``[resolution resolution]`` bool, True where the mask image is white."""
  image = _open_image(path, "mask").convert("L")
  image = _resized(image, resolution, "mask", path, Image.Resampling.NEAREST)
  mask = np.asarray(image) >= 128
  if not mask.any():
    raise ValueError(f"mask {path!r} has no white pixels: it marks no region")
  return mask


def read_video(path: str, frames: int, resolution: int) -> np.ndarray:
  """``[frames resolution resolution 3]`` float32 in [-1, 1]: the first ``frames`` frames."""
  if not os.path.isfile(path):
    raise ValueError(f"video {path!r} does not exist")
  from stunet.data import video_decode  # PyAV is optional; needed only here
  av = video_decode.import_av()
  out = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError(f"video {path!r} has no video stream")
      for frame in container.decode(container.streams.video[0]):
        out.append(frame.to_image().convert("RGB"))
        if len(out) == frames:
          break
  except (av.error.FFmpegError, OSError) as e:
    raise ValueError(f"cannot read the video {path!r}: {e}") from None
  if len(out) < frames:
    raise ValueError(f"video {path!r} has {len(out)} frames; the model makes clips of "
                     f"{frames} frames")
  w, h = out[0].size
  if (w, h) != (resolution, resolution):
    warnings.warn(f"video {path!r} is {w}x{h}; resizing it to the model's "
                  f"{resolution}x{resolution}")
    out = [f.resize((resolution, resolution), Image.Resampling.BICUBIC) for f in out]
  return to_unit_range(np.stack([np.asarray(f, np.uint8) for f in out]))
