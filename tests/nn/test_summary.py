"""The summary command and the experiment configs: every config builds, counts add up."""

import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.nn import summary
from stunet.nn.config import UNetConfig
from stunet.nn.stunet import STUNet

from tests.nn.unet_testing import randomize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = ("tiny", "demo", "base", "paper")


def load_config(name):
  path = os.path.join(REPO, "experiments", "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_summary_of_every_config(name):
  config = load_config(name)
  s = summary.summarize(config, name)
  assert s.params_total == s.params_spatial + s.params_temporal
  assert s.params_temporal > 0 and s.params_spatial > 0
  assert s.video_shape == (1, config.data.frames, config.data.resolution,
                           config.data.resolution, 3)
  # Temporal down-sampling moves most of the work to fewer frames: cheaper than per-frame T2I.
  assert 0 < s.forward_flops < s.t2i_forward_flops


def test_without_temporal_downsampling_the_stunet_costs_more_than_t2i():
  config = load_config("tiny")
  config.model.temporal_factors = (1, 1)
  s = summary.summarize(config, "tiny")
  assert s.forward_flops > s.t2i_forward_flops


def test_flops_grow_linearly_with_batch():
  config = load_config("tiny")
  one, two = summary.summarize(config, batch=1), summary.summarize(config, batch=2)
  np.testing.assert_allclose(two.forward_flops, 2 * one.forward_flops, rtol=0.02)


def test_summary_command_line():
  out = subprocess.run(
      [sys.executable, "-m", "experiments.summary", "--config=experiments/configs/tiny.py",
       "--config.model.temporal_factors=(1,2)"],
      cwd=REPO, capture_output=True, text=True, check=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout
  assert "parameters: total" in out and "forward FLOPs" in out
  assert "video: 1x8x16x16x3" in out


def test_bad_config_field_is_named():
  config = load_config("tiny")
  config.model.temporal_factors = (2, 2, 2)
  with pytest.raises(ValueError, match=r"config.model.temporal_factors=\(2, 2, 2\)"):
    summary.summarize(config)
  with pytest.raises(ValueError, match=r"Unknown field\(s\) in config.model: model.temporal_factor\b"):
    UNetConfig.from_config({**load_config("tiny").model.to_dict(), "temporal_factor": 2})


# `tiny`'s gradient is compiled by the model tests (tests/nn/test_stunet.py, at its size) and
# by every train test; the larger `demo` model is checked here.
@pytest.mark.parametrize("name", ["demo"])
def test_jit_and_grad_at_config_size(name):
  config = load_config(name)
  cfg = UNetConfig.from_config(config.model)
  model = STUNet(cfg)
  t, r = config.data.frames, config.data.resolution
  x = jax.random.normal(jax.random.key(0), (1, t, r, r, 3))
  nc = jnp.array([500.0])
  text = jax.random.normal(jax.random.key(1), (1, config.text.max_length, config.text.width))
  mask = jnp.ones((1, config.text.max_length), bool)
  params = randomize(jax.eval_shape(model.init, jax.random.key(2), x, nc, text, mask)["params"])

  @jax.jit
  def loss_and_grad(p):
    return jax.value_and_grad(
        lambda p: jnp.mean((model.apply({"params": p}, x, nc, text, mask) - x) ** 2))(p)

  loss, grads = loss_and_grad(params)
  assert np.isfinite(float(loss))
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and max(norms) > 0
