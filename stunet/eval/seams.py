"""Seam metric for windowed sampling: frame-to-frame change at window boundaries (SPEC §4).

Denoising a long clip window by window without MultiDiffusion leaves visible jumps where one
window's frames give way to the next (the paper's Fig. 14). We measure them as the mean
absolute frame-to-frame difference across the boundary frame pairs divided by the same mean
over all other consecutive pairs: about 1 when boundaries look like any other frame pair,
well above 1 when they jump.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def frame_differences(video) -> np.ndarray:
  """``[T - 1]``: mean ``|frame_{i+1} - frame_i|`` of a clip ``[T h w c]`` or batch
  ``[b T h w c]`` (averaged over the batch), in float64."""
  video = np.asarray(video, np.float64)
  if video.ndim == 4:
    video = video[None]
  if video.ndim != 5:
    raise ValueError(f"expected a video [T, h, w, c] or a batch [b, T, h, w, c], got shape "
                     f"{video.shape}")
  if video.shape[1] < 2:
    raise ValueError(f"need at least 2 frames to measure frame differences, got "
                     f"{video.shape[1]}")
  return np.abs(video[:, 1:] - video[:, :-1]).mean(axis=(0, 2, 3, 4))


def boundary_vs_interior_diff(video, boundaries: Sequence[int]) -> float:
  """Mean frame difference at ``boundaries`` over the mean elsewhere.

  Args:
    video: ``[T h w c]`` or ``[b T h w c]`` (any numeric dtype).
    boundaries: indices ``i`` of the frame pairs ``(i, i + 1)`` that straddle a boundary, in
      ``[0, T - 2]`` (e.g. `stunet.diffusion.multidiffusion.WindowLayout.seams`).

  Returns:
    The ratio; ``inf`` when the clip changes only at the boundaries.
  """
  diffs = frame_differences(video)
  boundaries = sorted({int(i) for i in boundaries})
  if not boundaries:
    raise ValueError("boundaries is empty: give at least one frame-pair index")
  bad = [i for i in boundaries if not 0 <= i < len(diffs)]
  if bad:
    raise ValueError(f"boundary indices {bad} out of range: a clip of {len(diffs) + 1} frames "
                     f"has frame pairs 0..{len(diffs) - 1}")
  interior = np.ones(len(diffs), bool)
  interior[boundaries] = False
  if not interior.any():
    raise ValueError("every frame pair is a boundary: no interior pairs to compare with")
  at_boundary, elsewhere = diffs[boundaries].mean(), diffs[interior].mean()
  if elsewhere == 0:
    if at_boundary == 0:
      raise ValueError("the clip is static (all frame differences are 0): the ratio is "
                       "undefined")
    return float("inf")
  return float(at_boundary / elsewhere)
