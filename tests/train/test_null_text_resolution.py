"""`diffusion.null_text='auto'` resolved per stage (`loop.resolve_null_text`): zeros from
scratch, the empty caption from an imported U-Net, the parent's choice otherwise."""

import json
import os

import pytest

from stunet.convert import imported_checkpoint
from stunet.diffusion import config as diffusion_config
from stunet.train import loop
from stunet.train import stages as stages_lib
from tests.train.conftest import tiny_config

T2I, VIDEO = stages_lib.get_stage("t2i"), stages_lib.get_stage("video")


def _write_stage_config(stage_dir, null_text=None):
  os.makedirs(os.path.join(stage_dir, "checkpoints"), exist_ok=True)
  diffusion = {} if null_text is None else {"null_text": null_text}
  with open(os.path.join(stage_dir, "config.json"), "w") as f:
    json.dump({"diffusion": diffusion}, f)


def test_from_scratch_is_zeros_and_an_explicit_choice_is_kept(tmp_path):
  c = tiny_config()
  assert loop.resolve_null_text(c, T2I, str(tmp_path)) == "zeros"
  c.diffusion.null_text = "empty_caption"
  assert loop.resolve_null_text(c, T2I, str(tmp_path)) == "empty_caption"
  assert loop.resolve_null_text(c, VIDEO, str(tmp_path)) == "empty_caption"


@pytest.mark.parametrize("parent, expected", [("empty_caption", "empty_caption"),
                                              ("zeros", "zeros"),
                                              (None, "zeros")])  # saved before the option
def test_a_stage_takes_its_parents_null_text(tmp_path, parent, expected):
  c = tiny_config()
  _write_stage_config(str(tmp_path / "t2i"), parent)
  assert loop.resolve_null_text(c, VIDEO, str(tmp_path)) == expected
  # The same through init_from (another run's workdir, or one of its checkpoints).
  other = tmp_path / "other"
  _write_stage_config(str(other), parent)
  c.stage.video.init_from = str(other)
  assert loop.resolve_null_text(c, VIDEO, str(tmp_path / "new")) == expected
  c.stage.video.init_from = str(other / "checkpoints" / "7")
  assert loop.resolve_null_text(c, VIDEO, str(tmp_path / "new")) == expected


def test_an_imported_unet_uses_the_empty_caption(tmp_path):
  workdir = str(tmp_path / "imported")
  os.makedirs(workdir)
  with open(os.path.join(workdir, imported_checkpoint.CONFIG_NAME), "w") as f:
    json.dump({"model": {}, "text_width": 8, "imported_from": {"format": "diffusers"}}, f)
  c = tiny_config()
  c.stage.video.init_from = workdir
  assert loop.resolve_null_text(c, VIDEO, str(tmp_path / "run")) == "empty_caption"
  resolved = loop.with_resolved_null_text(c, VIDEO, str(tmp_path / "run"))
  assert resolved.diffusion.null_text == "empty_caption" and c.diffusion.null_text == "auto"


def test_a_bad_value_names_the_field():
  c = tiny_config()
  c.diffusion.null_text = "blank"
  with pytest.raises(ValueError, match=r"diffusion\.null_text must be one of .*'blank'"):
    diffusion_config.validate(c.diffusion)
