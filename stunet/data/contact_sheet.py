"""Contact sheets: a grid of frames, one row per sample, for looking at a sampling run at a
glance (SPEC §5 outputs; the per-sample PNG written next to each video)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stunet.data import video_write


def frame_indices(num_frames: int, columns: int) -> list[int]:
  """``columns`` frame indices evenly spread from the first to the last frame."""
  if columns < 1:
    raise ValueError(f"columns must be >= 1, got {columns}")
  columns = min(columns, num_frames)
  if columns == 1:
    return [0]
  return [round(i * (num_frames - 1) / (columns - 1)) for i in range(columns)]


def contact_sheet(videos, frames: int | Sequence[int] = 8, *, gap: int = 2,
                  gap_value: int = 255) -> np.ndarray:
  """A uint8 image with sample ``i``'s selected frames on row ``i``.

  Args:
    videos: uint8 ``[n t h w 3]`` (or one clip ``[t h w 3]``).
    frames: how many evenly spaced frames per row, or the frame indices themselves.
    gap: pixels of ``gap_value`` between cells.

  Returns:
    ``[n h + (n - 1) gap, k w + (k - 1) gap, 3]`` for ``k`` frames per row.
  """
  videos = np.asarray(videos)
  if videos.ndim == 4:
    videos = videos[None]
  if videos.ndim != 5 or videos.dtype != np.uint8 or videos.shape[-1] != 3:
    raise ValueError(f"videos must be uint8 [n, t, h, w, 3] (or [t, h, w, 3]), got "
                     f"{videos.dtype} {videos.shape}")
  if gap < 0:
    raise ValueError(f"gap must be >= 0, got {gap}")
  n, t, h, w, _ = videos.shape
  indices = frame_indices(t, frames) if isinstance(frames, (int, np.integer)) else list(frames)
  bad = [i for i in indices if not -t <= i < t]
  if not indices or bad:
    raise ValueError(f"frame indices {bad or indices} invalid for clips of {t} frames")
  k = len(indices)
  sheet = np.full((n * h + (n - 1) * gap, k * w + (k - 1) * gap, 3), gap_value, np.uint8)
  for i in range(n):
    for j, f in enumerate(indices):
      top, left = i * (h + gap), j * (w + gap)
      sheet[top:top + h, left:left + w] = videos[i, f]
  return sheet


def write_contact_sheet(path: str, videos, frames: int | Sequence[int] = 8, **kwargs) -> str:
  """`contact_sheet` saved as PNG; returns ``path``."""
  return video_write.write_png(path, contact_sheet(videos, frames, **kwargs))
