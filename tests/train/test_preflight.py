"""The run's up-front check: every stage of `config.stages` resolved and checked before step 1."""

import jax
import pytest

from stunet.parallel import mesh as mesh_lib
from stunet.train import loop
from stunet.train import preflight
from tests.train.conftest import tiny_config


@pytest.fixture(scope="module")
def mesh():
  return mesh_lib.make_mesh(tiny_config().mesh)


def test_valid_run_resolves_every_stage(mesh):
  c = tiny_config()
  c.stages = "t2i,video,tsr"
  resolved = preflight.check_run(c, mesh)
  assert [r.data.modality for r in resolved] == ["image", "video", "video"]
  assert resolved[2].model.cond_channels == 4  # the tsr stage's own resolution of the model


def test_a_later_stage_is_named_when_only_it_rejects_the_config(mesh):
  c = tiny_config()
  c.data.frames = 7  # fine for t2i (single frames), not for the video stage's down-sampling
  with pytest.raises(ValueError, match=r"^stage 'video': Number of frames 7 is not divisible "
                                       r"by the product of model\.temporal_factors"):
    preflight.check_run(c, mesh)


def test_per_stage_batch_is_checked_against_the_mesh(mesh):
  c = tiny_config()
  c.stage.video.global_batch_size = len(jax.devices()) + 1
  with pytest.raises(ValueError, match=rf"^stage 'video': data\.global_batch_size="
                                       rf"{len(jax.devices()) + 1} is not divisible by the "
                                       rf"data-parallel size {len(jax.devices())}"):
    preflight.check_run(c, mesh)


def test_stage_configure_and_missing_start_point(mesh):
  c = tiny_config()
  c.stages = "t2i,tsr"
  c.stage.tsr.keyframe_interval = 3  # does not divide the tiny config's frames
  with pytest.raises(ValueError, match=r"^stage 'tsr': .*keyframe_interval"):
    preflight.check_run(c, mesh)
  c = tiny_config()
  c.stage.video.init_from = "no/such/run"
  with pytest.raises(FileNotFoundError,
                     match=r"^stage 'video': stage\.video\.init_from='no/such/run' does not "
                           r"exist"):
    preflight.check_run(c, mesh)


def test_train_checks_before_writing_the_workdir(mesh, tmp_path):
  c = tiny_config()
  c.data.frames = 7
  with pytest.raises(ValueError, match="^stage 'video'"):
    loop.train(c, str(tmp_path / "run"), mesh=mesh)
  assert not (tmp_path / "run").exists()


def test_a_context_axis_must_divide_the_video_frames():
  c = tiny_config()
  c.mesh.axes = ("data", "fsdp", "context", "tensor")
  c.mesh.shape = (1, 1, 8, 1)
  context_mesh = mesh_lib.make_mesh(c.mesh)
  c.data.frames = 12  # divisible by the temporal factors (4), not by the context axis (8)
  with pytest.raises(ValueError, match=r"^stage 'video': the mesh's context axis of 8 devices "
                                       r"does not divide data\.frames=12"):
    preflight.check_run(c, context_mesh)
  c.data.frames = 16
  preflight.check_run(c, context_mesh)
  c.stages = "t2i"  # single frames: the axis holds copies, which is allowed
  c.data.frames = 12
  preflight.check_run(c, context_mesh)
