"""Writing generated videos and frames: mp4 (PyAV), GIF and PNG (pillow) (SPEC §5 outputs).

Samples leave the model as float videos in ``[-1, 1]``; `to_uint8` maps them to pixels.
mp4 uses H.264 in yuv420p, which every browser plays; PyAV is the optional ``video`` extra and
is imported only when an mp4 is written. GIFs are the fallback that needs nothing installed.
"""

from __future__ import annotations

import fractions
import os
import warnings

import numpy as np
from PIL import Image


def import_av():
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('Writing mp4 files needs PyAV: pip install "stunet[video]"') from e
  return av


_GIF_FALLBACK_REASONS: set[str] = set()


def warn_gif_fallback(reason: Exception | str) -> None:
  """Warns that mp4 cannot be written (``reason``) and GIFs are, once per process and reason.

  A run writes clip after clip; without the ``video`` extra each one would repeat the same
  warning (34 lines from one main job).
  """
  reason = str(reason)
  if reason in _GIF_FALLBACK_REASONS:
    return
  _GIF_FALLBACK_REASONS.add(reason)
  warnings.warn(f"{reason}; writing GIFs instead of mp4 (this warning is shown once)",
                stacklevel=2)


def to_uint8(video) -> np.ndarray:
  """Floats in ``[-1, 1]`` (any shape) -> uint8 ``[0, 255]``, clipped and rounded."""
  video = np.asarray(video, np.float32)
  if not np.all(np.isfinite(video)):
    raise ValueError("video contains NaN or infinite values")
  return np.round((np.clip(video, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def check_video(video, name: str = "video") -> np.ndarray:
  """Returns ``video`` as a uint8 ``[t h w 3]`` array, or raises naming what is wrong."""
  video = np.asarray(video)
  if video.dtype != np.uint8:
    raise ValueError(f"{name} must be uint8 (convert floats in [-1, 1] with to_uint8), got "
                     f"{video.dtype}")
  if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) < 1:
    raise ValueError(f"{name} must be [t, h, w, 3] with t, h, w >= 1, got shape {video.shape}")
  return video


def _check_fps(fps: float) -> None:
  if not fps > 0:
    raise ValueError(f"fps must be > 0, got {fps!r}")


def write_mp4(path: str, video, fps: float, *, codec: str = "libx264", crf: int = 17) -> str:
  """Writes ``video`` (uint8 ``[t h w 3]``) as an H.264 mp4 and returns ``path``.

  yuv420p needs even frame sizes: an odd height or width is padded by repeating the last
  row/column (with a warning). ``crf`` 17 is near-lossless; the defaults of 23+ blur the small
  frames we generate.
  """
  video = check_video(video)
  _check_fps(fps)
  av = import_av()
  if codec not in av.codecs_available:
    raise ValueError(f"this FFmpeg build has no {codec!r} encoder; try codec='mpeg4'")
  t, h, w, _ = video.shape
  pad_h, pad_w = h % 2, w % 2
  if pad_h or pad_w:
    warnings.warn(f"mp4 (yuv420p) needs an even frame size; padding {h}x{w} to "
                  f"{h + pad_h}x{w + pad_w}")
    video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  rate = fractions.Fraction(fps).limit_denominator(1001)
  with av.open(path, mode="w") as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = w + pad_w, h + pad_h
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": str(crf)}
    for frame in video:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def write_gif(path: str, video, fps: float, *, loop: int = 0) -> str:
  """Writes ``video`` (uint8 ``[t h w 3]``) as a looping GIF and returns ``path``.

  GIF stores frame durations in 10 ms units, so the played rate is ``100 / round(100 / fps)``.
  pillow merges consecutive identical frames into one longer frame (the playback is the same).
  """
  video = check_video(video)
  _check_fps(fps)
  frames = [Image.fromarray(f) for f in video]
  duration_ms = 10 * max(1, round(100.0 / fps))
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms,
                 loop=loop, disposal=1)
  return path


def write_png(path: str, image) -> str:
  """Writes a uint8 ``[h w 3]`` image as PNG and returns ``path``."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image must be uint8 [h, w, 3], got {image.dtype} {image.shape}")
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  Image.fromarray(image).save(path, format="PNG")
  return path
