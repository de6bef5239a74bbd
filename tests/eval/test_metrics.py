"""Tests for caption parsing and the sample metrics on hand-made clips with known answers."""

import numpy as np
import pytest

from stunet.data import captions
from stunet.data import shapes_render
from stunet.data import shapes_scene
from stunet.data import shapes_video
from stunet.eval import caption_parser
from stunet.eval import metrics
from stunet.eval import seams

R, T, FPS = 32, 16, 16


def _object(colour, shape="circle", size="large", motion="down", speed="quick"):
  return shapes_scene.SceneObject(
      shape=shapes_scene.SHAPES.index(shape), colour=shapes_scene.COLOUR_NAMES.index(colour),
      size=shapes_scene.SIZES.index(size), motion=shapes_scene.MOTIONS.index(motion),
      speed=shapes_scene.SPEEDS.index(speed))


def _down_quick_positions(x0=10.0, y0=4.0):
  # 3 px/frame downwards (quick at 32 px and 16 fps), wrapping at the bottom edge.
  return np.stack([np.full(T, x0), (y0 + 3.0 * np.arange(T)) % R], -1).astype(np.float32)


PROMPT = "a large red circle moving quickly downwards"


@pytest.fixture(scope="module")
def hand_made():
  """Five clips for PROMPT: right, wrong colour, vanishing, colour flip, jittery."""
  red, blue = _object("red"), _object("blue")
  positions = _down_quick_positions()
  good = shapes_render.render([red], positions[None], R)
  wrong_colour = shapes_render.render([blue], positions[None], R)
  vanishing = good.copy()
  vanishing[5:9] = np.asarray(shapes_scene.BACKGROUND, np.uint8)  # gone for 4 of 16 frames
  flipped = good.copy()
  flipped[12:] = wrong_colour[12:]  # blue for the last 4 frames
  jitter = np.tile([1.0, -1.0, -1.0, 1.0], T // 4)  # orthogonal to [1, t]: a line fit keeps it
  jittery = shapes_render.render(
      [red], (positions + np.stack([jitter, np.zeros(T)], -1))[None].astype(np.float32), R)
  clips = np.stack([good, wrong_colour, vanishing, flipped, jittery])
  return clips, metrics.evaluate_clips(clips, [PROMPT] * 5, FPS, seam_boundaries=[7])


def test_caption_parser_reads_every_dataset_caption():
  config = {c.name: c for c in shapes_video.BUILDER_CONFIGS}["demo"]
  for split in ("train", "test"):
    for index in range(40):
      example = shapes_video.generate_example(config, split, index)
      parsed = caption_parser.parse_caption(example["caption"])
      assert len(parsed) == example["num_objects"]
      for j, obj in enumerate(parsed):
        assert obj.colour == shapes_scene.COLOUR_NAMES[example["colour"][j]]
        assert obj.shape == shapes_scene.SHAPES[example["shape"][j]]
        assert obj.size == shapes_scene.SIZES[example["size"][j]]
        assert obj.motion == shapes_scene.MOTIONS[example["motion"][j]]
        assert obj.speed == shapes_scene.SPEEDS[example["speed"][j]]


def test_caption_parser_splits_at_the_right_joiner_and_rejects_other_text():
  text = "A big orange ball hopping rapidly up and down and a tiny cyan rhombus rising gently."
  parsed = caption_parser.parse_caption(text)
  assert [o.as_dict() for o in parsed] == [
      dict(colour="orange", shape="circle", size="large", motion="bouncing", speed="quick"),
      dict(colour="cyan", shape="diamond", size="small", motion="up", speed="slow")]
  # Words come from the dataset's vocabularies, so its own captions always parse.
  rng = np.random.default_rng(0)
  objs = [_object("green", "triangle", "small", "left", "slow")]
  assert caption_parser.parse_caption(captions.caption(objs, rng))[0].motion == "left"
  with pytest.raises(ValueError, match="cannot parse 'a red car driving left'"):
    caption_parser.parse_caption("a red car driving left")
  with pytest.raises(ValueError, match="cannot parse"):
    caption_parser.parse_caption(" and ".join([PROMPT] * 3))  # more than MAX_OBJECTS


def test_exact_metrics_per_corruption(hand_made):
  _, result = hand_made
  good, wrong, vanishing, flipped, jittery = result["per_clip"]

  assert good["all_correct"] and good["count_correct"]
  c = good["objects"][0]["consistency"]
  assert (c["presence"], c["colour_stability"], c["shape_stability"]) == (1.0, 1.0, 1.0)
  assert c["all_frames_present"] and c["smooth"] and c["trajectory_rms_px"] < 0.02

  assert wrong["objects"][0]["correct"] == dict(colour=False, shape=True, size=True,
                                                motion=True, speed=True)
  assert not wrong["all_correct"]

  c = vanishing["objects"][0]["consistency"]
  assert vanishing["all_correct"]  # attributes are still right...
  assert c["presence"] == 12 / 16 and not c["all_frames_present"]  # ...but it vanished.
  assert c["colour_stability"] == 1.0

  c = flipped["objects"][0]["consistency"]
  assert c["presence"] == 1.0 and c["colour_stability"] == 12 / 16
  assert flipped["num_tracked"] == 2 and not flipped["count_correct"]

  c = jittery["objects"][0]["consistency"]
  assert jittery["objects"][0]["correct"]["motion"]
  assert c["trajectory_rms_px"] == pytest.approx(1.0, abs=0.03) and not c["smooth"]


def test_aggregates_and_markdown(hand_made):
  clips, result = hand_made
  assert result["num_clips"] == 5 and result["num_objects"] == 5
  assert result["accuracy"]["colour"] == 4 / 5
  assert result["accuracy"]["shape"] == 1.0 and result["accuracy"]["motion"] == 1.0
  assert result["accuracy"]["count"] == 4 / 5
  assert result["all_correct"] == 3 / 5  # good, vanishing, jittery
  assert result["consistency"]["presence"] == pytest.approx((4 + 12 / 16) / 5)
  assert result["consistency"]["colour_stability"] == pytest.approx((4 + 12 / 16) / 5)
  assert result["consistency"]["all_frames_present"] == 4 / 5
  assert result["consistency"]["smooth"] == 4 / 5
  assert result["seam_ratio"] == seams.boundary_vs_interior_diff(clips, [7])
  table = metrics.metrics_to_markdown(result)
  assert "| accuracy: colour | 0.800 |" in table
  assert "| all-correct captions | 0.600 |" in table
  assert table.startswith("| metric | value |\n|---|---|\n")


def test_two_objects_are_matched_by_attributes_not_order():
  red = _object("red", "square", "small", "right", "slow")
  yellow = _object("yellow", "triangle", "large", "bouncing", "quick")
  rng = np.random.default_rng(1)
  positions = np.stack([shapes_scene.trajectory(o, rng, T, R, FPS) for o in (red, yellow)])
  positions[0, :, 1] = 4.0  # keep the square above the bouncing triangle: no overlap
  clip = shapes_render.render([red, yellow], positions, R)
  prompt = ("a big yellow triangle bouncing fast up and down next to "
            "a small red box sliding gently right")
  result = metrics.evaluate_clips(clip[None], [prompt], FPS)
  assert result["all_correct"] == 1.0
  assert [o["detected"]["colour"] for o in result["per_clip"][0]["objects"]] == [
      "yellow", "red"]


def test_garbage_clip_scores_zero_and_errors_are_named():
  noise = np.random.default_rng(0).integers(0, 256, (1, T, R, R, 3), dtype=np.uint8)
  result = metrics.evaluate_clips(noise, [PROMPT], FPS)
  assert result["detected_fraction"] == 0.0 and result["all_correct"] == 0.0
  assert all(v == 0.0 for v in result["accuracy"].values())
  assert result["consistency"]["presence"] == 0.0
  with pytest.raises(ValueError, match="got 1 clips but 2 prompts"):
    metrics.evaluate_clips(noise, [PROMPT] * 2, FPS)
  with pytest.raises(ValueError, match="needs a feature_extractor"):
    metrics.evaluate_clips(noise, [PROMPT], FPS, real_clips=noise)
  with pytest.raises(ValueError, match="uint8"):
    metrics.evaluate_clips(noise.astype(np.float32), [PROMPT], FPS)
