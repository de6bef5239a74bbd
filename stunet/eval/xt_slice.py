"""XT slices: the paper's picture of temporal consistency (Lumiere Figs. 3 and 14; SPEC §1, §4).

Take one image row (or column) of every frame and stack them over time: time runs down the
image, space across. Smooth motion draws smooth slanted lines; flicker, aliased fast motion or
a seam between temporal windows shows as a horizontal break.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

AXES = ("row", "column")


def xt_slice(video, rows: int | Sequence[int] | None = None, *, axis: str = "row",
             gap: int = 2, gap_value=None) -> np.ndarray:
  """Slices of a clip ``[t h w c]`` over time.

  Args:
    video: ``[t h w c]`` array (uint8 or float).
    rows: the row (``axis='row'``) or column (``axis='column'``) index, several of them, or
      None for the middle one. Negative indices count from the end.
    axis: 'row' gives ``[t w c]`` per slice, 'column' gives ``[t h c]``.
    gap: lines of ``gap_value`` between stacked slices (several rows only).
    gap_value: filler for the gaps; default white (255 for uint8, 1.0 for floats).

  Returns:
    ``[t w c]`` (or ``[t h c]``) for one row; for ``k`` rows the slices stacked top to
    bottom, ``[k t + (k - 1) gap, w, c]``.
  """
  video = np.asarray(video)
  if video.ndim != 4:
    raise ValueError(f"video must be [t, h, w, c], got shape {video.shape}")
  if axis not in AXES:
    raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
  if gap < 0:
    raise ValueError(f"gap must be >= 0, got {gap}")
  size = video.shape[1] if axis == "row" else video.shape[2]
  single = rows is None or isinstance(rows, (int, np.integer))
  index_list = [size // 2 if rows is None else rows] if single else list(rows)
  if not index_list:
    raise ValueError("rows is empty")
  bad = [r for r in index_list if not -size <= r < size]
  if bad:
    raise ValueError(f"{axis} indices {bad} out of range for {size} {axis}s")
  slices = [video[:, r] if axis == "row" else video[:, :, r] for r in index_list]
  if single:
    return slices[0]
  if gap_value is None:
    gap_value = 255 if video.dtype == np.uint8 else 1.0
  filler = np.full((gap,) + slices[0].shape[1:], gap_value, video.dtype)
  parts = []
  for i, s in enumerate(slices):
    if i:
      parts.append(filler)
    parts.append(s)
  return np.concatenate(parts, axis=0)
