"""The stage's effective config (`loop.resolve_stage_config`): resolved once at the start of a
stage, the same when resolved again (sampling rebuilds a stage from its saved config.json)."""

import pytest

from stunet.train import build
from stunet.train import loop
from stunet.train import stages as stages_lib
from tests.train.conftest import tiny_config


@pytest.mark.parametrize("name", sorted(stages_lib.STAGES))
def test_resolving_a_resolved_config_changes_nothing(tmp_path, name):
  c = tiny_config()
  c.stage.t2i_style.image = "style.png"  # the style stage checks that one is named
  c.stage[name].num_steps = 7
  c.stage[name].global_batch_size = 4
  once = loop.resolve_stage_config(c, stages_lib.get_stage(name), str(tmp_path))
  assert once.is_locked
  assert (once.optim.num_steps, once.data.global_batch_size) == (7, 4)
  assert once.diffusion.null_text in ("zeros", "empty_caption")  # 'auto' made concrete
  twice = loop.resolve_stage_config(once, stages_lib.get_stage(name), str(tmp_path))
  assert twice.to_dict() == once.to_dict()
  assert build.build_stage(once, stages_lib.get_stage(name)).config.to_dict() == once.to_dict()


def test_a_bad_stage_field_is_named_at_resolution(tmp_path):
  c = tiny_config()
  c.stage.ssr.low_resolution = c.data.resolution * 2
  with pytest.raises(ValueError, match="stage.ssr.low_resolution"):
    loop.resolve_stage_config(c, stages_lib.get_stage("ssr"), str(tmp_path))
