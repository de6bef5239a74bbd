"""Tests for the lenient colour-presence diagnostic on hand-made clips with known answers."""

import numpy as np
import pytest

from stunet.data import shapes_render
from stunet.data import shapes_scene
from stunet.eval import colour_presence
from stunet.eval import metrics

R, T = 32, 8
PROMPT = "a large red circle moving quickly downwards"


def _object(colour, shape="circle", size="large"):
  return shapes_scene.SceneObject(
      shape=shapes_scene.SHAPES.index(shape), colour=shapes_scene.COLOUR_NAMES.index(colour),
      size=shapes_scene.SIZES.index(size), motion=shapes_scene.MOTIONS.index("down"),
      speed=shapes_scene.SPEEDS.index("quick"))


def _clip(objects):
  positions = np.stack([np.stack([np.full(T, 8.0 + 14 * i), 4.0 + 3.0 * np.arange(T)], -1)
                        for i in range(len(objects))]).astype(np.float32)
  return shapes_render.render(objects, positions, R)


def test_right_colour_found_whatever_the_shape():
  background = np.asarray(shapes_scene.BACKGROUND, np.uint8)
  red = _clip([_object("red")])
  # A ragged red blob that fits no shape template still counts as the colour being present.
  ragged = np.broadcast_to(background, red.shape).copy()
  ragged[:, 3:9, 3:8] = shapes_scene.COLOURS["red"]
  ragged[:, 10:13, 5:8] = shapes_scene.COLOURS["red"]
  assert 6 * 5 + 3 * 3 > colour_presence.min_pixels(red.shape[1])  # above the speck threshold
  for clip in (red, ragged):
    assert colour_presence.score_clip(clip, PROMPT) == {
        "recall": 1.0, "spurious": 0.0, "all_frames": True}


def test_missing_frames_wrong_and_extra_colours():
  background = np.asarray(shapes_scene.BACKGROUND, np.uint8)
  red = _clip([_object("red")])
  gone = red.copy()
  gone[2:4] = background  # absent in 2 of 8 frames
  s = colour_presence.score_clip(gone, PROMPT)
  assert s["recall"] == 6 / 8 and not s["all_frames"] and s["spurious"] == 0.0
  blue = _clip([_object("blue")])
  assert colour_presence.score_clip(blue, PROMPT) == {
      "recall": 0.0, "spurious": 1.0, "all_frames": False}
  both = _clip([_object("red"), _object("green", "square")])
  s = colour_presence.score_clip(both, PROMPT)
  assert s["recall"] == 1.0 and s["spurious"] == 1.0
  two = ("a large red circle moving quickly downwards and a big green box falling fast")
  assert colour_presence.score_clip(both, two)["spurious"] == 0.0


def test_specks_below_half_the_smallest_object_are_not_a_colour():
  background = np.asarray(shapes_scene.BACKGROUND, np.uint8)
  specks = np.broadcast_to(background, (T, R, R, 3)).copy()
  specks[:, 0, 0] = specks[:, 10, 10] = shapes_scene.COLOURS["red"]  # 2 px < min_pixels
  assert colour_presence.min_pixels(R) > 2
  assert colour_presence.score_clip(specks, PROMPT)["recall"] == 0.0


def test_part_of_evaluate_clips_and_its_table():
  clips = np.stack([_clip([_object("red")]), _clip([_object("blue")])])
  result = metrics.evaluate_clips(clips, [PROMPT] * 2, 16)
  assert result["colour_presence"] == {"recall": 0.5, "spurious": 0.5, "all_frames": 0.5}
  assert "| colour presence (lenient): recall | 0.500 |" in metrics.metrics_to_markdown(result)


def test_bad_clip_shape_is_named():
  with pytest.raises(ValueError, match=r"clip must be \[t, h, w, 3\]"):
    colour_presence.present_colours(np.zeros((4, 4, 3), np.uint8))
