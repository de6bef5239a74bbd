"""`shapes_video`: held-out splits, captions vs attributes, positions vs pixels, speeds."""

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stunet.data import captions
from stunet.data import shapes_render
from stunet.data import shapes_scene
from stunet.data import shapes_video

TINY = next(c for c in shapes_video.BUILDER_CONFIGS if c.name == "tiny")
DEMO = next(c for c in shapes_video.BUILDER_CONFIGS if c.name == "demo")
VERSION = str(shapes_video.ShapesVideo.VERSION)
MAX_EXTENT = shapes_scene.MAX_HALF_EXTENT  # largest half-extent / size radius


def _objects(example):
  return [shapes_scene.SceneObject(*(int(example[k][i]) for k in
                                     ("shape", "colour", "size", "motion", "speed")))
          for i in range(int(example["num_objects"]))]


@pytest.fixture(scope="module")
def built(data_dir):
  """All examples of the built tiny configs, per (config, split)."""
  out = {}
  for name in ("tiny", "image_tiny"):
    builder = tfds.builder_from_directory(f"{data_dir}/shapes_video/{name}/{VERSION}")
    for split in ("train", "validation", "test"):
      source = builder.as_data_source(split)
      out[name, split] = [source[i] for i in range(len(source))]
  return out


def test_builds_expected_splits_and_metadata(data_dir, built):
  builder = tfds.builder_from_directory(f"{data_dir}/shapes_video/tiny/{VERSION}")
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


def test_version_2_is_built_and_names_the_new_geometry(data_dir):
  # 1.0.0 builds (3-px shapes) must not be reused: the version and its notes changed.
  assert VERSION == "2.0.0"
  assert "2.0.0" in shapes_video.ShapesVideo.RELEASE_NOTES
  builder = tfds.builder_from_directory(f"{data_dir}/shapes_video/tiny/{VERSION}")
  assert str(builder.info.version) == VERSION


def _min_mask_difference(radius, resolution, offsets=16):
  """Fewest pixels in which two shapes' 0.5-coverage masks differ (over sub-pixel centres)."""
  rng = np.random.default_rng(0)
  fewest = np.inf
  for _ in range(offsets):
    centre = np.asarray([resolution / 2 + rng.uniform(-0.5, 0.5, 2)], np.float32)
    masks = [shapes_render.coverage(s, centre, radius, resolution, wrap=False)[0] >= 0.5
             for s in shapes_scene.SHAPES]
    for a, b in itertools.combinations(masks, 2):
      fewest = min(fewest, int((a != b).sum()))
  return fewest


@pytest.mark.parametrize("resolution, at_least", [(32, 17), (64, 80), (128, 350)])
def test_every_pair_of_shapes_differs_in_many_pixels(resolution, at_least):
  # 1.0.0 (radius 0.09 R, square half-side 0.85 r): a small circle and square at 32 px
  # differed in 0 pixels. benchmarks/results/shapes_aliasing.md has the full table.
  radius = shapes_scene.SIZE_RADIUS["small"] * resolution
  assert _min_mask_difference(radius, resolution) >= at_least


def test_objects_stay_inside_frame_where_they_must():
  # Bouncing and static objects are drawn without wrap: the largest one must not be clipped.
  r = DEMO.resolution
  for size in shapes_scene.SIZES:
    for shape in shapes_scene.SHAPES:
      obj = shapes_scene.SceneObject(shape=shapes_scene.SHAPES.index(shape), colour=0,
                                     size=shapes_scene.SIZES.index(size),
                                     motion=shapes_scene.MOTIONS.index("bouncing"), speed=1)
      positions = shapes_scene.trajectory(obj, np.random.default_rng(0), 32, r, 16)
      area = shapes_render.coverage(shape, positions, obj.radius(r), r, wrap=False).sum((1, 2))
      free = shapes_render.coverage(shape, positions, obj.radius(r), 4 * r, wrap=False)
      # The same object on a 4x larger canvas keeps all its area: nothing was cut off.
      np.testing.assert_allclose(area, free.sum((1, 2)), rtol=1e-5)
      top = positions[:, 1].min() - MAX_EXTENT * obj.radius(r)
      assert top >= 0.0


def test_scene_objects_keep_apart_where_paths_allow():
  clear, two = 0, 0
  for i in range(150):
    example = shapes_video.generate_example(DEMO, "train", i)
    objects = _objects(example)
    if len(objects) < 2:
      continue
    two += 1
    delta = example["positions"][0] - example["positions"][1]
    delta = (delta + 16) % 32 - 16
    extents = MAX_EXTENT * (objects[0].radius(32) + objects[1].radius(32))
    clear += np.linalg.norm(delta, axis=-1).min() >= extents
  # Most pairs never touch; the rest cross each other's path (left vs down, say).
  assert two > 50 and clear / two > 0.55


def test_positions_are_normalised_on_the_torus():
  for i in range(60):
    positions = shapes_video.generate_example(DEMO, "train", i)["positions"]
    finite = positions[np.isfinite(positions)]
    assert finite.min() >= 0.0 and finite.max() < 32.0
  assert shapes_scene.wrap_to_frame(-1e-17, 32) == 0.0
  assert shapes_scene.wrap_to_frame(31.999999999999996, 32) == 0.0
  assert shapes_scene.wrap_to_frame(np.float32(-1e-9), 32) == 0.0
  np.testing.assert_array_equal(shapes_scene.wrap_to_frame([33.5, -0.5, 5.0], 32),
                                [1.5, 31.5, 5.0])


def test_bouncing_aliases_keyframes_of_the_quick_start():
  # The quick start trains at 8 fps and keyframes_tsr keeps every 2nd frame (4 fps): both
  # bounce periods are visible at 8 fps (> 2 frames) and under-sampled by the keyframes (< 2
  # keyframes per period). At 16 fps the same holds for keyframes every 4 frames.
  for fps, interval in ((8, 2), (16, 4)):
    for speed in shapes_scene.SPEEDS:
      period = shapes_scene.bounce_period_frames(speed, fps)
      assert 2 < period < 2 * interval, (fps, speed, period)
  # Linear motion is never direction-ambiguous at those keyframes (step < R / 2).
  assert 2 * shapes_scene.speed_px_per_frame("quick", 32, 8) < 16


def test_linear_motion_moves_at_the_documented_speed():
  r, fps = 32, 16
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
  period = int(shapes_scene.bounce_period_frames("quick", 16))  # 5 frames
  assert period == 5
  np.testing.assert_allclose(y[period:], y[:-period], atol=1e-3)
  assert shapes_scene.speed_px_per_frame("slow", 32, 16) == 0.25
