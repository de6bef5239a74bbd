"""Training samples on disk: the frame grid layout and one decodable video per prompt."""

import os

import numpy as np
from PIL import Image

from stunet.data import video_write
from stunet.train.samples import write_samples


def test_video_samples_grid_and_files(tmp_path):
  pixels = np.random.default_rng(0).uniform(-1, 1, (2, 4, 8, 6, 3)).astype(np.float32)
  paths = write_samples(str(tmp_path), pixels, ["first prompt", "second prompt"], fps=8)
  grid = np.asarray(Image.open(paths[0]))
  expected = video_write.to_uint8(pixels)
  assert grid.shape == (2 * 8, 4 * 6, 3)  # rows: prompts, columns: frames
  np.testing.assert_array_equal(grid[8:16, 12:18], expected[1, 2])
  assert [os.path.basename(p).split(".")[0] for p in paths[1:]] == ["sample_00", "sample_01"]
  assert all(os.path.getsize(p) > 0 for p in paths)
  assert (tmp_path / "prompts.txt").read_text().splitlines() == ["first prompt", "second prompt"]


def test_image_samples_write_only_the_grid(tmp_path):
  pixels = np.zeros((3, 8, 8, 3), np.float32)
  paths = write_samples(str(tmp_path), pixels, ["a", "b", "c"], fps=8)
  assert len(paths) == 1
  assert np.asarray(Image.open(paths[0])).shape == (3 * 8, 8, 3)
