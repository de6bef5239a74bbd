"""`build.build_stage`: the initialiser's shapes are traced once per distinct model."""

import jax
import pytest

from stunet.train import build
from stunet.train import stages
from tests.train.conftest import tiny_config


@pytest.fixture
def init_traces(monkeypatch):
  """Counts the traces of any stage's `init_params` made by `build_stage`."""
  calls = []
  eval_shape = jax.eval_shape

  def counting(fn, *args, **kwargs):
    if getattr(fn, "__name__", "") == "init_params":
      calls.append(fn)
    return eval_shape(fn, *args, **kwargs)
  monkeypatch.setattr(build.jax, "eval_shape", counting)
  monkeypatch.setattr(build, "_ABSTRACT_PARAMS", {})
  return calls


def test_the_same_stage_is_traced_once(init_traces):
  config = tiny_config(two_levels=True)
  first = build.build_stage(config, stages.get_stage("t2i"))
  config.optim.learning_rate = 1e-2  # does not change the parameters' shapes
  again = build.build_stage(config, stages.get_stage("t2i"))
  assert len(init_traces) == 1
  assert again.abstract_params is first.abstract_params
  assert again.config.optim.learning_rate == 1e-2
  assert jax.tree.structure(jax.eval_shape(again.init_params, jax.random.key(0))) == (
      jax.tree.structure(first.abstract_params))


@pytest.mark.parametrize("change", ["channels", "text_width", "resolution", "stage"])
def test_what_changes_the_shapes_is_traced_again(init_traces, change):
  config = tiny_config(two_levels=True)
  base = build.build_stage(config, stages.get_stage("t2i"))
  stage = "t2i"
  if change == "channels":
    config.model.channels = 8
  elif change == "text_width":
    config.text.width = 16
  elif change == "resolution":
    config.data.resolution = 8
  else:
    stage = "video"
  other = build.build_stage(config, stages.get_stage(stage))
  assert len(init_traces) == 2
  shapes = lambda tree: [x.shape for x in jax.tree.leaves(tree)]
  if change == "resolution":  # the same parameters, built for another input size
    assert shapes(other.abstract_params) == shapes(base.abstract_params)
  else:
    assert shapes(other.abstract_params) != shapes(base.abstract_params)
  assert other.example_shape != base.example_shape or change != "resolution"


def test_the_cache_is_bounded(init_traces, monkeypatch):
  monkeypatch.setattr(build, "_ABSTRACT_PARAMS_MAX", 2)
  config = tiny_config(two_levels=True)
  for channels in (8, 16, 24, 8):
    config.model.channels = channels
    build.build_stage(config, stages.get_stage("t2i"))
  assert len(build._ABSTRACT_PARAMS) == 2  # pylint: disable=protected-access
  assert len(init_traces) == 4  # 8 was evicted by 24, so it is traced again
