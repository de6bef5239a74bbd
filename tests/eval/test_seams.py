"""Tests for the boundary-vs-interior frame-difference ratio."""

import numpy as np
import pytest

from stunet.eval import seams


def _ramp(steps):
  """A clip whose frame ``i + 1`` differs from frame ``i`` by ``steps[i]`` everywhere."""
  levels = np.concatenate([[0.0], np.cumsum(steps)])
  return np.broadcast_to(levels.reshape(-1, 1, 1, 1), (len(levels), 2, 3, 3))


def test_ratio_is_exact_on_a_known_clip():
  steps = [1, 1, 5, 1, 1, 7, 1]
  video = _ramp(steps)
  np.testing.assert_allclose(seams.frame_differences(video), steps)
  assert seams.boundary_vs_interior_diff(video, [2, 5]) == pytest.approx(6.0)
  assert seams.boundary_vs_interior_diff(video, [0]) == pytest.approx(1 / (16 / 6))
  # A batch averages the per-pair differences over examples.
  batch = np.stack([video, 3 * video])
  assert seams.boundary_vs_interior_diff(batch, [2, 5]) == pytest.approx(6.0)


def test_only_boundaries_move_gives_inf_and_errors_are_named():
  video = _ramp([0, 0, 3, 0])
  assert seams.boundary_vs_interior_diff(video, [2]) == float("inf")
  with pytest.raises(ValueError, match="static"):
    seams.boundary_vs_interior_diff(_ramp([0, 0, 0]), [1])
  with pytest.raises(ValueError, match=r"boundary indices \[4\] out of range"):
    seams.boundary_vs_interior_diff(video, [4])
  with pytest.raises(ValueError, match="boundaries is empty"):
    seams.boundary_vs_interior_diff(video, [])
  with pytest.raises(ValueError, match="no interior pairs"):
    seams.boundary_vs_interior_diff(_ramp([1, 2]), [0, 1])
  with pytest.raises(ValueError, match="at least 2 frames"):
    seams.frame_differences(np.zeros((1, 2, 2, 3)))
