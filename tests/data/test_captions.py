"""Caption templates and the left/right swap used by horizontal flips."""

import numpy as np
import pytest

from stunet.data import captions
from stunet.data import shapes_scene


@pytest.mark.parametrize("text, mirrored", [
    ("a red ball moving quickly to the left", "a red ball moving quickly to the right"),
    ("A box sliding right. Left!", "A box sliding left. Right!"),
    ("heading fast leftwards", "heading fast rightwards"),
    ("LEFT and right", "RIGHT and left"),
    ("a bright leftover rightful copyright", "a bright leftover rightful copyright"),
    ("un cercle rouge", "un cercle rouge"),
])
def test_swap_left_right(text, mirrored):
  assert captions.swap_left_right(text) == mirrored
  assert captions.swap_left_right(mirrored) == text


def test_caption_names_every_attribute_and_articles_agree():
  obj = shapes_scene.SceneObject(shape=shapes_scene.SHAPES.index("circle"),
                                 colour=shapes_scene.COLOUR_NAMES.index("orange"),
                                 size=shapes_scene.SIZES.index("large"),
                                 motion=shapes_scene.MOTIONS.index("bouncing"),
                                 speed=shapes_scene.SPEEDS.index("quick"))
  phrases = captions.object_phrases(obj)
  assert "a large orange circle bouncing quickly up and down" in phrases
  assert all(" orange " in p and "up and down" in p for p in phrases)
  assert captions.object_phrases(obj, with_motion=False) == [
      "a large orange circle", "a large orange ball", "a large orange disc",
      "a big orange circle", "a big orange ball", "a big orange disc"]
  rng = np.random.default_rng(0)
  texts = {captions.caption([obj], rng) for _ in range(50)}
  assert len(texts) > 5 and texts <= set(phrases)
