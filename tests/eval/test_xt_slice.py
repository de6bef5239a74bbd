"""Tests for XT slices and contact sheets."""

import numpy as np
import pytest

from stunet.data import contact_sheet
from stunet.eval import xt_slice


def _video(t=5, h=6, w=7):
  return np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_xt_slice_is_the_row_of_each_frame():
  video = _video()
  got = xt_slice.xt_slice(video, 2)
  assert got.shape == (5, 7, 3)
  for f in range(5):
    np.testing.assert_array_equal(got[f], video[f, 2])
  np.testing.assert_array_equal(xt_slice.xt_slice(video), video[:, 3])  # middle row
  np.testing.assert_array_equal(xt_slice.xt_slice(video, -1), video[:, 5])


def test_xt_slice_columns_and_stacking():
  video = _video()
  np.testing.assert_array_equal(xt_slice.xt_slice(video, 4, axis="column"), video[:, :, 4])
  stacked = xt_slice.xt_slice(video, [1, 4], gap=2)
  assert stacked.shape == (5 + 2 + 5, 7, 3)
  np.testing.assert_array_equal(stacked[:5], video[:, 1])
  np.testing.assert_array_equal(stacked[5:7], 255)
  np.testing.assert_array_equal(stacked[7:], video[:, 4])
  floats = xt_slice.xt_slice(video.astype(np.float32) / 255, [0, 1], gap=1)
  np.testing.assert_array_equal(floats[5], 1.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rows=6), r"row indices \[6\] out of range for 6 rows"),
    (dict(rows=7, axis="column"), r"column indices \[7\] out of range"),
    (dict(axis="time"), "axis must be one of"),
    (dict(rows=[]), "rows is empty"),
])
def test_xt_slice_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    xt_slice.xt_slice(_video(), **kwargs)
  with pytest.raises(ValueError, match=r"must be \[t, h, w, c\]"):
    xt_slice.xt_slice(_video()[0])


def test_contact_sheet_layout():
  videos = np.random.default_rng(1).integers(0, 256, (2, 9, 4, 5, 3), dtype=np.uint8)
  sheet = contact_sheet.contact_sheet(videos, 3, gap=1)
  assert contact_sheet.frame_indices(9, 3) == [0, 4, 8]
  assert sheet.shape == (2 * 4 + 1, 3 * 5 + 2, 3)
  for i in range(2):
    for j, f in enumerate([0, 4, 8]):
      np.testing.assert_array_equal(sheet[i * 5:i * 5 + 4, j * 6:j * 6 + 5], videos[i, f])
  np.testing.assert_array_equal(sheet[4], 255)  # the gap row
  explicit = contact_sheet.contact_sheet(videos[0], [8, 0], gap=0)
  np.testing.assert_array_equal(explicit, np.concatenate([videos[0, 8], videos[0, 0]], 1))
  assert contact_sheet.frame_indices(2, 8) == [0, 1]


def test_contact_sheet_errors():
  with pytest.raises(ValueError, match="must be uint8"):
    contact_sheet.contact_sheet(np.zeros((2, 3, 4, 4, 3), np.float32))
  with pytest.raises(ValueError, match="invalid for clips of 3 frames"):
    contact_sheet.contact_sheet(np.zeros((2, 3, 4, 4, 3), np.uint8), [0, 3])
