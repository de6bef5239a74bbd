"""Captions for `shapes_video` from templates with synonyms, and the left/right swap for flips.

Text conditioning (SPEC §3) needs varied phrasing of the same content, so every attribute
has several synonyms and each caption picks one at random (seeded per clip). Every caption
names every attribute of every object, so a caption can be checked against the stored
ground truth (`object_phrases` lists all phrasings of one object).
"""

from __future__ import annotations

import itertools
import re
from typing import Sequence

import numpy as np

from stunet.data import shapes_scene

SHAPE_WORDS = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
SPEED_WORDS = {"slow": ("slowly", "gently"), "quick": ("quickly", "fast", "rapidly")}
# `{speed}` is replaced by a speed adverb.
MOTION_TEMPLATES = {
    "left": ("moving {speed} to the left", "sliding {speed} left", "heading {speed} leftwards"),
    "right": ("moving {speed} to the right", "sliding {speed} right",
              "heading {speed} rightwards"),
    "up": ("moving {speed} upwards", "rising {speed}", "floating {speed} up"),
    "down": ("moving {speed} downwards", "falling {speed}", "sinking {speed} down"),
    "bouncing": ("bouncing {speed} up and down", "hopping {speed} up and down"),
}
# How two object phrases are joined.
JOINERS = (" and ", ", together with ", " next to ")


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _noun_phrases(obj: shapes_scene.SceneObject) -> list[str]:
  colour = shapes_scene.COLOUR_NAMES[obj.colour]
  phrases = []
  for size in SIZE_WORDS[shapes_scene.SIZES[obj.size]]:
    for shape in SHAPE_WORDS[shapes_scene.SHAPES[obj.shape]]:
      phrases.append(f"{_article(size)} {size} {colour} {shape}")
  return phrases


def _motion_phrases(obj: shapes_scene.SceneObject) -> list[str]:
  templates = MOTION_TEMPLATES[shapes_scene.MOTIONS[obj.motion]]
  adverbs = SPEED_WORDS[shapes_scene.SPEEDS[obj.speed]]
  return [t.format(speed=a) for t, a in itertools.product(templates, adverbs)]


def object_phrases(obj: shapes_scene.SceneObject, with_motion: bool = True) -> list[str]:
  """Every phrasing a caption can use for this object."""
  nouns = _noun_phrases(obj)
  if not with_motion:
    return nouns
  return [f"{n} {m}" for n, m in itertools.product(nouns, _motion_phrases(obj))]


def caption(objects: Sequence[shapes_scene.SceneObject], rng: np.random.Generator,
            with_motion: bool = True) -> str:
  """A random phrasing naming every attribute of every object."""
  parts = []
  for obj in objects:
    options = object_phrases(obj, with_motion)
    parts.append(options[int(rng.integers(len(options)))])
  text = parts[0]
  for part in parts[1:]:
    text += JOINERS[int(rng.integers(len(JOINERS)))] + part
  return text


_LEFT_RIGHT = {"left": "right", "right": "left", "leftwards": "rightwards",
               "rightwards": "leftwards", "leftward": "rightward", "rightward": "leftward"}
_LEFT_RIGHT_RE = re.compile(r"\b(" + "|".join(_LEFT_RIGHT) + r")\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
  """Mirrors a caption: 'left' <-> 'right' (whole words, case kept), for horizontal flips."""

  def swap(match: re.Match) -> str:
    word = match.group(0)
    mirrored = _LEFT_RIGHT[word.lower()]
    if word.isupper():
      return mirrored.upper()
    if word[0].isupper():
      return mirrored.capitalize()
    return mirrored

  return _LEFT_RIGHT_RE.sub(swap, text)
