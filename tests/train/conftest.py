"""Shared pieces of the training tests: the tiny config and a fixed synthetic batch."""

import numpy as np
import pytest

from experiments.configs import tiny

CAPTIONS = ("a red circle moves left", "a blue square moves up", "a green triangle spins",
            "two circles bounce", "a yellow square falls", "a red square moves right",
            "a blue circle grows", "a green circle shrinks")


def tiny_config(num_steps=300, mesh_shape=(1, -1, 1)):
  """The tiny config with a schedule long enough for the overfit test (shared compiles)."""
  c = tiny.get_config()
  c.optim.update(dict(num_steps=num_steps, warmup_steps=10, learning_rate=2e-3))
  c.mesh.shape = mesh_shape
  c.text.on_truncation = "silent"
  return c


def fixed_batch(tokenizer, modality: str, shape, seed: int = 0) -> dict:
  """uint8 pixels: smooth random blobs (learnable structure) plus the captions' ids/mask."""
  rng = np.random.default_rng(seed)
  b = len(CAPTIONS)
  coarse = rng.integers(0, 256, (b,) + tuple(shape[:-3]) + (4, 4, 3)).astype(np.uint8)
  pixels = coarse.repeat(shape[-3] // 4, axis=-3).repeat(shape[-2] // 4, axis=-2)
  ids, mask = tokenizer(list(CAPTIONS))
  return {modality: pixels, "text_ids": ids, "text_mask": mask}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A TFDS data dir with shapes_video/tiny (built once per session, in seconds)."""
  from stunet.data import shapes_video
  root = tmp_path_factory.mktemp("tfds")
  shapes_video.ShapesVideo(config="tiny", data_dir=str(root)).download_and_prepare()
  return str(root)
