"""The applications end to end on a tiny trained run: conditional modes, v2v and the SSR cascade.

One workdir, the session's shared t2i -> video run (`tests/train/conftest.small_run`) continued,
trains conditional (2 steps) at 8x8, an SSR stage 8 -> 16 px on windows of 4 frames and a style
stage, then `sample_run` samples every mode from it. One
device: compiles dominate here, and the samplers are compiled once per model and setting
(`sample_run` caches them), so the modes of one model share a compile.
"""

import json
import os
import warnings

import flax
import jax
import numpy as np
from PIL import Image
import pytest

from stunet.sampling import sample_run
from stunet.sampling import trained_stage
from stunet.data import video_write
from stunet.nn import inflate
from stunet.parallel import mesh as mesh_lib
from stunet.train import loop
from tests.train.conftest import data_dir  # noqa: F401  (session fixture)
from tests.train.conftest import copy_of_small_run
from tests.train.conftest import small_run  # noqa: F401  (session fixture)
from tests.train.conftest import small_run_config
from tests.train.conftest import tiny_config

STEPS = 2
FRAMES, RES = 8, 8


def _config(data_dir, style_image):  # noqa: F811
  c = small_run_config(data_dir)
  assert c.data.resolution == RES  # a centre crop of the 16 px tiny clips; SSR sees 16 px
  c.stages = "t2i,video,conditional,ssr,t2i_style"
  c.stage.t2i_style.image = style_image
  c.stage.ssr.update(dict(resolution=16, low_resolution=RES, window_frames=4,
                          window_overlap=2))
  return c


@pytest.fixture(scope="module")
def mesh():
  return mesh_lib.make_mesh(tiny_config().mesh, jax.devices()[:1])


@pytest.fixture(scope="module")
def workdir(data_dir, small_run, files, mesh, tmp_path_factory):  # noqa: F811
  # The session's t2i + video run (the same config) continued with the three other stages.
  path = copy_of_small_run(small_run, tmp_path_factory)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the 12x12 style image is resized
    results = loop.train(_config(data_dir, files["image"]), path, mesh=mesh)
  assert [(r.stage, r.step) for r in results] == [
      ("t2i", 2), ("video", 2), ("conditional", 2), ("ssr", 2), ("t2i_style", 2)]
  return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """An image (12x12: resized with a warning), a mask and an 8-frame video."""
  root = tmp_path_factory.mktemp("inputs")
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (12, 12, 3), np.uint8)
  Image.fromarray(image).save(root / "image.png")
  mask = np.zeros((RES, RES), np.uint8)
  mask[2:6, 3:7] = 255
  Image.fromarray(mask).save(root / "mask.png")
  video = np.repeat(rng.integers(0, 256, (FRAMES, 2, 2, 3), np.uint8), 4, axis=1).repeat(4, 2)
  video_write.write_gif(str(root / "video.gif"), video, 8)
  (root / "broken.png").write_bytes(b"not an image")
  Image.fromarray(np.zeros((RES, RES), np.uint8)).save(root / "black.png")
  video_write.write_gif(str(root / "short.gif"), video[:3], 8)
  return {"black": str(root / "black.png"), "short": str(root / "short.gif"),
          "image": str(root / "image.png"), "mask": str(root / "mask.png"),
          "video": str(root / "video.gif"), "broken": str(root / "broken.png"),
          "mask_array": mask > 0, "video_array": video}


def _sample(workdir, mesh, out, inputs, **kwargs):
  options = sample_run.SampleOptions(num_samples=2, seed=1, steps=STEPS, sampler="ddpm")
  return sample_run.sample_run(workdir, ["a red circle moves left"], options=options,
                               out_dir=str(out), progress=False, inputs=inputs, mesh=mesh,
                               **kwargs)


def _still(path):
  from stunet.conditioning import inputs as inputs_lib
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return inputs_lib.read_image(path, RES)


@pytest.mark.slow
def test_image_to_video_reproduces_the_image(workdir, mesh, files, tmp_path):
  with pytest.warns(UserWarning, match="is 12x12; resizing it to the model's 8x8"):
    result = _sample(workdir, mesh, tmp_path,
                     sample_run.ModeInputs(mode="i2v", image=files["image"]))
  assert result.pixels.shape == (2, FRAMES, RES, RES, 3)
  still = _still(files["image"])
  # Known pixels are pasted (paste_known): exact up to the written uint8 rounding.
  np.testing.assert_allclose(result.pixels[:, 0], np.broadcast_to(still, (2,) + still.shape),
                             atol=1e-5)
  assert np.abs(result.pixels[:, 1:] - still).mean() > 0.05  # later frames are generated
  record = json.load(open(os.path.join(result.out_dir, "p000_s00.json")))
  assert record["settings"]["mode"] == "i2v" and record["settings"]["stage"] == "conditional"


@pytest.mark.slow
def test_cinemagraph_keeps_the_still_outside_the_mask(workdir, mesh, files, tmp_path):
  result = _sample(workdir, mesh, tmp_path, sample_run.ModeInputs(
      mode="cinemagraph", image=files["image"], mask=files["mask"]))
  still = _still(files["image"])
  outside = ~files["mask_array"]
  for frame in range(FRAMES):
    np.testing.assert_allclose(result.pixels[:, frame][:, outside],
                               np.broadcast_to(still[outside], (2,) + still[outside].shape),
                               atol=1e-5)
  inside = files["mask_array"]
  assert np.abs(result.pixels[:, 1:][:, :, inside] - still[inside]).mean() > 0.05


@pytest.mark.slow
def test_inpainting_keeps_the_known_pixels(workdir, mesh, files, tmp_path):
  result = _sample(workdir, mesh, tmp_path, sample_run.ModeInputs(
      mode="inpaint", video=files["video"], mask=files["mask"]))
  known = files["video_array"].astype(np.float32) / 127.5 - 1
  outside = ~files["mask_array"]
  np.testing.assert_allclose(result.pixels[:, :, outside],
                             np.broadcast_to(known[:, outside], (2,) + known[:, outside].shape),
                             atol=1e-5)


@pytest.mark.slow
def test_video_to_video(workdir, mesh, files, tmp_path):
  same = _sample(workdir, mesh, tmp_path / "s0", sample_run.ModeInputs(
      mode="v2v", video=files["video"], strength=0.0))
  np.testing.assert_array_equal(video_write.to_uint8(same.pixels[0]), files["video_array"])
  a = _sample(workdir, mesh, tmp_path / "a", sample_run.ModeInputs(
      mode="v2v", video=files["video"], strength=0.5))
  b = _sample(workdir, mesh, tmp_path / "b", sample_run.ModeInputs(
      mode="v2v", video=files["video"], strength=0.5))
  np.testing.assert_array_equal(a.pixels, b.pixels)  # deterministic per seed
  assert not np.array_equal(video_write.to_uint8(a.pixels[0]), files["video_array"])


@pytest.mark.slow
def test_ssr_cascade(workdir, mesh, tmp_path):
  result = _sample(workdir, mesh, tmp_path, sample_run.ModeInputs(),
                   cascade=sample_run.CascadeOptions(workdir=workdir, steps=STEPS))
  assert result.pixels.shape == (2, FRAMES, 16, 16, 3)
  assert np.all(np.isfinite(result.pixels))
  record = json.load(open(os.path.join(result.out_dir, "p000_s01.json")))["settings"]
  assert record["ssr_window_starts"] == [0, 2, 4] and record["ssr_window"] == 4
  assert record["ssr_merge"] == "average"


@pytest.mark.slow
def test_style_blending(workdir, mesh, tmp_path):
  base = _sample(workdir, mesh, tmp_path / "base", sample_run.ModeInputs())
  zero = _sample(workdir, mesh, tmp_path / "a0", sample_run.ModeInputs(),
                 style=sample_run.StyleOptions(workdir=workdir, alpha=0.0))
  np.testing.assert_array_equal(zero.pixels, base.pixels)  # a = 0: the base model exactly
  _, params, _, _ = trained_stage.load_stage(workdir, "video", None, "ema", mesh)
  _, style, _, _ = trained_stage.load_stage(workdir, "t2i_style", None, "ema", mesh)
  one, step = trained_stage.styled_params(params, sample_run.StyleOptions(workdir, 1.0), mesh)
  assert step == 2
  flat = lambda t: flax.traverse_util.flatten_dict(jax.device_get(t))
  labels = flat(inflate.label_params(params["unet"]))
  got, was, styled = flat(one["unet"]), flat(params["unet"]), flat(style["unet"])
  moved = 0
  for key, label in labels.items():
    want = styled[key] if label == inflate.SPATIAL else was[key]
    np.testing.assert_array_equal(got[key], want)  # a = 1: style spatial + base temporal
    moved += label == inflate.SPATIAL and not np.array_equal(styled[key], was[key])
  assert moved  # the style run did change spatial weights
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(one["text"]),
               jax.device_get(params["text"]))


@pytest.mark.parametrize("inputs,message", [
    (dict(mode="i2v"), "--mode=i2v needs --image"),
    (dict(mode="inpaint", video="v.mp4"), "--mode=inpaint needs --mask"),
    (dict(mode="t2v", image="x.png"), "--image is not used by --mode=t2v"),
    (dict(mode="v2v", video="v.mp4", strength=1.5), "strength must be in"),
    (dict(mode="zoom"), "mode must be one of"),
])
def test_mode_inputs_are_validated(inputs, message):
  with pytest.raises(ValueError, match=message):
    sample_run.ModeInputs(**inputs).validate()


@pytest.mark.slow
def test_unreadable_inputs(workdir, mesh, files, tmp_path):
  def fails(message, **inputs):
    with pytest.raises(ValueError, match=message):
      _sample(workdir, mesh, tmp_path, sample_run.ModeInputs(**inputs))
  fails("cannot read the image", mode="i2v", image=files["broken"])
  fails("does not exist", mode="i2v", image=str(tmp_path / "no"))
  fails("has no white pixels", mode="cinemagraph", image=files["image"], mask=files["black"])
  fails("has 3 frames; the model makes clips of 8", mode="v2v", video=files["short"])
