"""A tiny trained run (two steps per stage) shared by the evaluation tests."""

import pytest

from experiments.configs import tiny

# Two resolution levels instead of three: the same kinds of layers, about half the compiles.
MODEL_OVERRIDES = dict(channel_mult=(1, 2), num_res_blocks=(1, 1), attention_levels=(False, True),
                       num_heads=(2, 2), temporal_factors=(2,))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """(workdir, mesh) of a tiny t2i + video run of 2 steps each on shapes_video/tiny.

  One device: compiling for the 8 simulated devices costs more than the tiny steps.
  """
  import jax
  from stunet.parallel import mesh as mesh_lib
  from stunet.train import loop
  root = tmp_path_factory.mktemp("tiny_run")
  c = tiny.get_config()
  c.model.update(MODEL_OVERRIDES)
  c.data.data_dir = str(root / "data")
  c.optim.update(dict(num_steps=2, warmup_steps=1))
  c.ckpt.every_steps = 2
  c.log.update(dict(num_samples=0, progress_bar=False, tensorboard=False))
  c.text.on_truncation = "silent"
  workdir = str(root / "run")
  mesh = mesh_lib.make_mesh(c.mesh, devices=jax.devices()[:1])
  loop.train(c, workdir, mesh=mesh)
  return workdir, mesh
