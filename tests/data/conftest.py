"""Small `shapes_video` builds shared by the data tests (built once per session, in seconds)."""

import pytest

from stunet.data import shapes_video


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir holding shapes_video/tiny and shapes_video/image_tiny."""
  root = tmp_path_factory.mktemp("tfds")
  for name in ("tiny", "image_tiny"):
    shapes_video.ShapesVideo(config=name, data_dir=str(root)).download_and_prepare()
  return str(root)
