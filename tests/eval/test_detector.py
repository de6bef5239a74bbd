"""Tests for the analytic shapes_video detector and its motion classification."""

import collections

import numpy as np
import pytest

from stunet.data import shapes_render
from stunet.data import shapes_scene
from stunet.data import shapes_video
from stunet.eval import detector
from stunet.eval import motion

_CONFIGS = {c.name: c for c in shapes_video.BUILDER_CONFIGS}


def _accuracy(config_name: str, split: str, count: int, stride: int = 1) -> dict:
  """Per-object accuracy of every attribute, and the mean fraction of frames present."""
  config = _CONFIGS[config_name]
  correct, objects, presence = collections.Counter(), 0, []
  for index in range(count):
    example = shapes_video.generate_example(config, split, index)
    video = example["video"][::stride]
    tracks = {t.colour: t for t in detector.detect(video, config.fps / stride).objects}
    for j in range(example["num_objects"]):
      objects += 1
      track = tracks.get(shapes_scene.COLOUR_NAMES[example["colour"][j]])
      presence.append(0.0 if track is None else track.presence)
      if track is None:
        continue
      correct["colour"] += 1
      read = {"shape": track.shape, "size": track.size, "motion": track.motion.motion,
              "speed": track.motion.speed}
      for name, vocab in (("shape", shapes_scene.SHAPES), ("size", shapes_scene.SIZES),
                          ("motion", shapes_scene.MOTIONS), ("speed", shapes_scene.SPEEDS)):
        correct[name] += read[name] == vocab[example[name][j]]
  return {**{name: correct[name] / objects
             for name in ("colour", "shape", "size", "motion", "speed")},
          "presence": float(np.mean(presence))}


def test_ground_truth_accuracy_at_32px_includes_held_out_triples():
  # Every test clip's first object is a held-out (colour, shape, motion) triple.
  accuracy = _accuracy("demo", "test", 48)
  assert min(accuracy.values()) >= 0.99, accuracy


def test_ground_truth_accuracy_at_the_quick_start_frame_rate():
  # The quick start reads every other frame of the 16 fps clips (8 fps): a quick bounce is
  # then 2.5 frames long and quick linear motion 6 px/frame. Validation clips: no tuning on
  # the test split.
  accuracy = _accuracy("demo", "validation", 64, stride=2)
  assert min(accuracy.values()) >= 0.99, accuracy


def test_ground_truth_accuracy_at_64px():
  accuracy = _accuracy("r64_f16_fps16", "validation", 12)
  assert min(accuracy.values()) >= 0.99, accuracy


def test_ground_truth_accuracy_at_16px():
  accuracy = _accuracy("tiny", "test", 16)
  assert min(accuracy.values()) >= 0.99, accuracy


def test_single_object_reads_exact_centroids_and_wraps():
  config = _CONFIGS["demo"]
  obj = shapes_scene.SceneObject(shape=shapes_scene.SHAPES.index("triangle"),
                                 colour=shapes_scene.COLOUR_NAMES.index("cyan"),
                                 size=shapes_scene.SIZES.index("large"),
                                 motion=shapes_scene.MOTIONS.index("right"),
                                 speed=shapes_scene.SPEEDS.index("quick"))
  # Starts near the right edge so it wraps around to the left during the clip (frame 2 sits
  # exactly on the seam, x = 0).
  x = (26.0 + 3.0 * np.arange(16)) % 32
  positions = np.stack([x, np.full(16, 11.3)], -1).astype(np.float32)
  video = shapes_render.render([obj], positions[None], 32)
  clip = detector.detect(video, config.fps)
  assert clip.detected and len(clip.objects) == 1
  track = clip.objects[0]
  assert (track.colour, track.shape, track.size) == ("cyan", "triangle", "large")
  assert track.presence == 1.0 and track.shape_stability == 1.0
  # Positions on a torus: normalised into [0, 32) and compared on their period (a centroid
  # a rounding error below the seam reads 31.99999..., one above it 0.0).
  assert (track.centroids >= 0).all() and (track.centroids < 32).all()
  np.testing.assert_allclose(motion.wrapped_step(track.centroids - positions, 32), 0,
                             atol=0.05)
  assert (track.motion.motion, track.motion.speed) == ("right", "quick")
  np.testing.assert_allclose(track.motion.velocity, (3.0, 0.0), atol=0.01)
  assert track.motion.periodic  # wraps every 32 / 3 frames, within 16 frames.
  assert track.motion.period_frames == pytest.approx(32 / 3, rel=0.01)


def test_centroid_on_the_seam_is_normalised_to_zero():
  # On some CPUs the rolled centroid of an object centred on the seam came back as
  # 31.999999999999996 (issue 19): it must read as 0, for every seam-straddling offset.
  obj = shapes_scene.SceneObject(shape=0, colour=0, size=1, motion=0, speed=0)
  for resolution in (16, 32, 64):
    for y in (0.0, resolution / 2):
      positions = np.asarray([[[0.0, y]]], np.float32)
      frames = shapes_render.render([obj], positions, resolution)
      (found,), _ = detector.detect_frames(frames)
      assert len(found) == 1
      x_read, y_read = found[0].centroid
      assert 0.0 <= x_read < resolution and 0.0 <= y_read < resolution
      assert abs(motion.wrapped_step(x_read, resolution)) < 1e-6
      assert abs(motion.wrapped_step(y_read - y, resolution)) < 1e-6


def test_unwrap_along_the_full_track_keeps_a_bounce_a_bounce():
  # Three far-apart samples of a quick bounce fit a line at any speed on the torus; the
  # occluded frames between them say it is a bounce (the detector passes them as the guide).
  obj = shapes_scene.SceneObject(shape=0, colour=0, size=1,
                                 motion=shapes_scene.MOTIONS.index("bouncing"),
                                 speed=shapes_scene.SPEEDS.index("quick"))
  track = shapes_scene.trajectory(obj, np.random.default_rng(1), 8, 32, 8.0).astype(float)
  sparse = np.full_like(track, np.nan)
  sparse[[0, 6, 7]] = track[[0, 6, 7]]
  guided = motion.classify(sparse, 32, 8.0, unwrap_from=track)
  assert guided.motion == "bouncing"
  np.testing.assert_allclose(guided.velocity[0], 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="unwrap_from must be present"):
    motion.classify(track, 32, 8.0, unwrap_from=sparse)


def test_bounce_period_and_speed_follow_fps():
  # The same quick bounce sampled at 32 fps has twice the period in frames.
  obj = shapes_scene.SceneObject(shape=0, colour=0, size=1,
                                 motion=shapes_scene.MOTIONS.index("bouncing"),
                                 speed=shapes_scene.SPEEDS.index("quick"))
  positions = shapes_scene.trajectory(obj, np.random.default_rng(3), 32, 32, 32.0)
  clip = detector.detect(shapes_render.render([obj], positions[None], 32), 32.0)
  est = clip.objects[0].motion
  assert (est.motion, est.speed) == ("bouncing", "quick")
  assert est.period_frames == pytest.approx(0.3125 * 32, rel=0.02)
  assert est.periodic and est.hop == pytest.approx(0.45 * 32, rel=0.05)


@pytest.mark.parametrize("resolution, frames", [(32, 16), (16, 8)])
def test_garbage_is_reported_not_guessed(resolution, frames):
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (frames, resolution, resolution, 3), dtype=np.uint8)
  result = detector.detect(noise, 16)
  assert not result.detected and not result.objects
  assert "not a shapes_video scene" in result.reason
  blank = np.broadcast_to(np.asarray(shapes_scene.BACKGROUND, np.uint8),
                          (frames, resolution, resolution, 3))
  result = detector.detect(blank, 16)
  assert not result.detected and result.reason == "blank: every pixel is the background"
  flat = np.full((frames, resolution, resolution, 3), 200, np.uint8)
  assert not detector.detect(flat, 16).detected


def test_frozen_clip_has_objects_but_no_motion():
  config = _CONFIGS["demo"]
  example = shapes_video.generate_example(config, "test", 3)
  frozen = np.repeat(example["video"][:1], config.frames, axis=0)
  result = detector.detect(frozen, config.fps)
  assert result.detected and result.objects
  for track in result.objects:
    assert (track.motion.motion, track.motion.speed) == ("none", "none")
    assert track.motion.reason.startswith("static: the object moves 0.000 px")


def test_motion_needs_three_frames_and_bad_input_is_named():
  centroids = np.full((8, 2), np.nan)
  centroids[2:4] = [[5.0, 5.0], [6.0, 5.0]]
  est = motion.classify(centroids, 16, 16)
  assert est.motion == "none" and "present in 2 frame(s)" in est.reason
  with pytest.raises(ValueError, match=r"centroids must be \[t, 2\]"):
    motion.classify(np.zeros((8, 3)), 16, 16)
  with pytest.raises(ValueError, match="uint8"):
    detector.detect(np.zeros((4, 16, 16, 3), np.float32), 16)
  with pytest.raises(ValueError, match="square"):
    detector.detect(np.zeros((4, 16, 20, 3), np.uint8), 16)
