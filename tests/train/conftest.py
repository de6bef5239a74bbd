"""Shared pieces of the training tests: the tiny config, a fixed synthetic batch, and the
session's shared data and trained run."""

import os
import shutil

import filelock
import numpy as np
import pytest

from experiments.configs import tiny

CAPTIONS = ("a red circle moves left", "a blue square moves up", "a green triangle spins",
            "two circles bounce", "a yellow square falls", "a red square moves right",
            "a blue circle grows", "a green circle shrinks")


# The tiny config with two levels instead of three: the same kinds of layers (spatial and
# temporal attention at the coarsest level, one temporal down/up-sampling), about half the
# compile time. The subprocess runs use it (also passed on their command line); the overfit
# test keeps the three-level tiny model, which this one does not overfit 5x in 300 steps.
MODEL_OVERRIDES = dict(channel_mult=(1, 2), num_res_blocks=(1, 1), attention_levels=(False, True),
                       num_heads=(2, 2), temporal_factors=(2,))
MODEL_FLAGS = tuple(f"--config.model.{k}={v!r}".replace(" ", "")
                    for k, v in MODEL_OVERRIDES.items())


def tiny_config(num_steps=300, mesh_shape=(1, -1, 1), two_levels=False):
  """The tiny config with a schedule long enough for the overfit test (shared compiles)."""
  c = tiny.get_config()
  if two_levels:
    c.model.update(MODEL_OVERRIDES)
  c.optim.update(dict(num_steps=num_steps, warmup_steps=10, learning_rate=2e-3))
  c.mesh.shape = mesh_shape
  c.text.on_truncation = "silent"
  return c


def small_run_config(data_dir: str):
  """A 2-step tiny run at 8x8 px (a centre crop of the 16 px clips), batch 8, 32-token
  captions: the runs the sampling tests train. They share it so that the session's
  compilation cache (tests/conftest.py) compiles each stage's step once."""
  c = tiny_config(num_steps=2, two_levels=True)
  c.data.data_dir = data_dir
  c.data.global_batch_size = 8
  c.data.resolution = 8
  c.log.update(dict(num_samples=0, tensorboard=False, progress_bar=False))
  c.text.max_length = 32
  return c


def fixed_batch(tokenizer, modality: str, shape, seed: int = 0) -> dict:
  """uint8 pixels: smooth random blobs (learnable structure) plus the captions' ids/mask."""
  rng = np.random.default_rng(seed)
  b = len(CAPTIONS)
  coarse = rng.integers(0, 256, (b,) + tuple(shape[:-3]) + (4, 4, 3)).astype(np.uint8)
  pixels = coarse.repeat(shape[-3] // 4, axis=-3).repeat(shape[-2] // 4, axis=-2)
  ids, mask = tokenizer(list(CAPTIONS))
  return {modality: pixels, "text_ids": ids, "text_mask": mask}


def _shared_dir(tmp_path_factory, worker_id: str, name: str) -> str:
  """`name` under a directory every pytest-xdist worker of this session sees (the session's
  own temporary directory without xdist)."""
  base = tmp_path_factory.getbasetemp()
  return str((base if worker_id == "master" else base.parent) / name)


def _build_once(path: str, build) -> str:
  """`build(path)` by the first worker that gets here; the others wait for it and reuse it.

  A marker file written after `build` returns says it finished: a worker that failed midway
  leaves no marker, and the next one builds again (a trained run resumes where it stopped).
  """
  with filelock.FileLock(path + ".lock"):
    if not os.path.exists(path + ".done"):
      build(path)
      open(path + ".done", "w").close()
  return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, worker_id):
  """A TFDS data dir with shapes_video/tiny (built once per session, in seconds)."""
  from stunet.data import shapes_video
  return _build_once(_shared_dir(tmp_path_factory, worker_id, "tfds"), lambda path: (
      shapes_video.ShapesVideo(config="tiny", data_dir=path).download_and_prepare()))


@pytest.fixture(scope="session")
def small_run(data_dir, tmp_path_factory, worker_id):
  """The workdir of `small_run_config`'s t2i + video run (2 steps each, on one device: compiling
  for eight devices costs more than these steps), trained once per session: the sampling and
  evaluation tests all read it. Read-only: a test that writes into a run copies it first
  (`copy_of_small_run`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from stunet.parallel import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from stunet.train import loop  # pylint: disable=g-import-not-at-top

  def train(path):
    c = small_run_config(data_dir)
    results = loop.train(c, path, mesh=mesh_lib.make_mesh(c.mesh, devices=jax.devices()[:1]))
    assert [(r.stage, r.step) for r in results] == [("t2i", 2), ("video", 2)]

  return _build_once(_shared_dir(tmp_path_factory, worker_id, "small_run"), train)


def copy_of_small_run(small_run: str, tmp_path_factory) -> str:  # noqa: F811
  """A private copy of the shared run, for tests that write into their run."""
  path = str(tmp_path_factory.mktemp("run") / "run")
  shutil.copytree(small_run, path)
  return path
