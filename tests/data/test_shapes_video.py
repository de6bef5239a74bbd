"""`shapes_video`: held-out splits, captions vs attributes, positions vs pixels, speeds."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stunet.data import captions
from stunet.data import shapes_scene
from stunet.data import shapes_video

TINY = next(c for c in shapes_video.BUILDER_CONFIGS if c.name == "tiny")
DEMO = next(c for c in shapes_video.BUILDER_CONFIGS if c.name == "demo")
MAX_EXTENT = 1.15  # largest half-extent / size radius (triangle and diamond)


def _objects(example):
  return [shapes_scene.SceneObject(*(int(example[k][i]) for k in
                                     ("shape", "colour", "size", "motion", "speed")))
          for i in range(int(example["num_objects"]))]


@pytest.fixture(scope="module")
def built(data_dir):
  """All examples of the built tiny configs, per (config, split)."""
  out = {}
  for name in ("tiny", "image_tiny"):
    builder = tfds.builder_from_directory(f"{data_dir}/shapes_video/{name}/1.0.0")
    for split in ("train", "validation", "test"):
      source = builder.as_data_source(split)
      out[name, split] = [source[i] for i in range(len(source))]
  return out


def test_builds_expected_splits_and_metadata(data_dir, built):
  builder = tfds.builder_from_directory(f"{data_dir}/shapes_video/tiny/1.0.0")
  assert {s: builder.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
      "train": 48, "validation": 16, "test": 16}
  held_out = builder.info.metadata["held_out_combinations"]
  assert [(h["colour"], h["shape"], h["motion"]) for h in held_out] == list(
      shapes_scene.HELD_OUT)
  assert builder.info.metadata["fps"] == 16
  assert built["tiny", "train"][0]["video"].shape == (8, 16, 16, 3)
  assert built["image_tiny", "train"][0]["image"].shape == (16, 16, 3)


def test_configs_cover_resolutions_frames_fps_and_images():
  names = {c.name for c in shapes_video.BUILDER_CONFIGS}
  for r in (32, 64, 128):
    assert f"image_r{r}" in names
    for f in (16, 32, 80):
      for fps in (8, 16, 32):
        assert f"r{r}_f{f}_fps{fps}" in names
  assert (DEMO.resolution, DEMO.frames, DEMO.fps) == (32, 16, 16)


def test_generation_is_deterministic():
  a = shapes_video.generate_example(TINY, "train", 7)
  b = shapes_video.generate_example(TINY, "train", 7)
  c = shapes_video.generate_example(TINY, "train", 8)
  np.testing.assert_array_equal(a["video"], b["video"])
  assert a["caption"] == b["caption"]
  assert not np.array_equal(a["video"], c["video"])


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_held_out_triples_only_in_test(built, split):
  examples = built["tiny", split] + [shapes_video.generate_example(DEMO, split, i)
                                     for i in range(300)]
  held = [any(shapes_scene.is_held_out(o) for o in _objects(e)) for e in examples]
  if split == "test":
    assert all(held)
  else:
    assert not any(held)


@pytest.mark.parametrize("config", ["tiny", "image_tiny"])
def test_captions_agree_with_attributes(built, config):
  for split in ("train", "validation", "test"):
    for example in built[config, split]:
      text = example["caption"].decode("utf-8")
      objects = _objects(example)
      for obj in objects:
        assert any(p in text for p in captions.object_phrases(obj, config == "tiny")), text
      named = {shapes_scene.COLOUR_NAMES[o.colour] for o in objects}
      for colour in set(shapes_scene.COLOUR_NAMES) - named:
        assert f" {colour} " not in text, text


def _centroid_errors(example, resolution):
  """|rendered centroid - stored position| for every object and frame it is fully visible."""
  video = example["video"].astype(np.float64)
  bg = np.asarray(shapes_scene.BACKGROUND, np.float64)
  objects = _objects(example)
  ys, xs = np.mgrid[0:resolution, 0:resolution] + 0.5
  errors = []
  for t in range(video.shape[0]):
    pos = example["positions"][:len(objects), t]
    extents = [MAX_EXTENT * o.radius(resolution) + 1.0 for o in objects]
    inside = [e <= p[0] <= resolution - e and e <= p[1] <= resolution - e
              for p, e in zip(pos, extents)]
    apart = len(objects) == 1 or np.linalg.norm(pos[0] - pos[1]) > sum(extents) + 1
    for k, obj in enumerate(objects):
      if not inside[k] or not apart:
        continue
      colour = np.asarray(shapes_scene.COLOURS[shapes_scene.COLOUR_NAMES[obj.colour]], float)
      direction = colour - bg
      offset = video[t] - bg  # h w c
      alpha = offset @ direction / (direction @ direction)
      # Only pixels that are a blend of this object's colour and the background.
      on_line = np.linalg.norm(offset - alpha[..., None] * direction, axis=-1) < 6
      w = np.where(on_line, np.clip(alpha, 0, 1), 0)
      centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
      errors.append(np.linalg.norm(centroid - pos[k]))
  return errors


def test_positions_match_rendered_centroids(built):
  errors = []
  for split in ("train", "test"):
    for example in built["tiny", split]:
      errors += _centroid_errors(example, TINY.resolution)
  for i in range(40):
    errors += _centroid_errors(shapes_video.generate_example(DEMO, "train", i), 32)
  assert len(errors) > 200
  assert max(errors) < 1.0
  assert np.mean(errors) < 0.1


def test_quick_and_bouncing_motion_alias_keyframes():
  r, fps = 32, 16
  largest_diameter = 2 * MAX_EXTENT * shapes_scene.SIZE_RADIUS["large"] * r
  quick = shapes_scene.speed_px_per_frame("quick", r, fps)
  # Keyframes 4 frames apart: the object jumps by more than its own size.
  assert 4 * quick > largest_diameter
  # Periodic motion faster than Nyquist for keyframes every 4 frames (period < 8 frames).
  for speed in shapes_scene.SPEEDS:
    assert shapes_scene.bounce_period_frames(speed, fps) < 8
  # The stored trajectories move at the documented speed.
  for i in range(60):
    example = shapes_video.generate_example(DEMO, "train", i)
    for k, obj in enumerate(_objects(example)):
      if shapes_scene.MOTIONS[obj.motion] in ("left", "right"):
        step = np.diff(example["positions"][k, :, 0])
        step = (step + r / 2) % r - r / 2  # undo wrap-around
        expected = shapes_scene.speed_px_per_frame(shapes_scene.SPEEDS[obj.speed], r, fps)
        np.testing.assert_allclose(np.abs(step), expected, rtol=1e-4)
        assert np.all(np.sign(step) == (1 if shapes_scene.MOTIONS[obj.motion] == "right"
                                        else -1))


def test_bouncing_is_periodic_and_slow_motion_is_subpixel():
  example = None
  for i in range(200):
    candidate = shapes_video.generate_example(DEMO, "train", i)
    objs = _objects(candidate)
    if objs[0].motion == shapes_scene.MOTIONS.index("bouncing") and objs[0].speed == 1:
      example = candidate
      break
  assert example is not None
  y = example["positions"][0, :, 1]
  period = int(shapes_scene.bounce_period_frames("quick", 16))  # 4 frames
  np.testing.assert_allclose(y[period:], y[:-period], atol=1e-3)
  assert shapes_scene.speed_px_per_frame("slow", 32, 16) == 0.25
