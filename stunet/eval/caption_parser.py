"""Caption -> expected object attributes, for scoring samples against their prompts (SPEC §1).

A `shapes_video` caption is one or two object phrases joined by one of `captions.JOINERS`.
Rather than re-stating the grammar, we enumerate every phrase the dataset's own templates can
produce (`captions.object_phrases` for every attribute combination) and look phrases up in that
table, so the parser accepts exactly the dataset's language and follows any change to its
vocabularies. Joiners can occur inside a phrase ("bouncing up and down"), so every joiner
position is tried as the split point.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

from stunet.data import captions
from stunet.data import shapes_scene


@dataclasses.dataclass(frozen=True)
class ExpectedObject:
  """The attributes a caption asks for, as vocabulary words."""
  colour: str
  shape: str
  size: str
  motion: str
  speed: str

  ATTRIBUTES = ("colour", "shape", "size", "motion", "speed")

  def as_dict(self) -> dict:
    return {a: getattr(self, a) for a in self.ATTRIBUTES}


def _normalise(text: str) -> str:
  return " ".join(text.lower().strip().rstrip(".").split())


@functools.cache
def _phrase_table() -> dict[str, ExpectedObject]:
  table = {}
  for shape, colour, size, motion, speed in itertools.product(
      *(range(len(v)) for v in (shapes_scene.SHAPES, shapes_scene.COLOUR_NAMES,
                                shapes_scene.SIZES, shapes_scene.MOTIONS,
                                shapes_scene.SPEEDS))):
    obj = shapes_scene.SceneObject(shape=shape, colour=colour, size=size, motion=motion,
                                   speed=speed)
    expected = ExpectedObject(
        colour=shapes_scene.COLOUR_NAMES[colour], shape=shapes_scene.SHAPES[shape],
        size=shapes_scene.SIZES[size], motion=shapes_scene.MOTIONS[motion],
        speed=shapes_scene.SPEEDS[speed])
    for phrase in captions.object_phrases(obj):
      table[_normalise(phrase)] = expected
  return table


def _parse(text: str, max_objects: int) -> list[ExpectedObject] | None:
  table = _phrase_table()
  if text in table:
    return [table[text]]
  if max_objects < 2:
    return None
  for joiner in captions.JOINERS:
    start = text.find(joiner)
    while start >= 0:
      head = text[:start]
      if head in table:
        rest = _parse(text[start + len(joiner):], max_objects - 1)
        if rest is not None:
          return [table[head]] + rest
      start = text.find(joiner, start + 1)
  return None


def parse_caption(text: str) -> list[ExpectedObject]:
  """The objects a `shapes_video` caption describes, in caption order.

  Case, surrounding spaces and a final full stop are ignored.

  Raises:
    ValueError: the text is not a caption the dataset's templates can produce.
  """
  if not isinstance(text, str):
    raise ValueError(f"caption must be a string, got {type(text).__name__}")
  objects = _parse(_normalise(text), shapes_scene.MAX_OBJECTS)
  if objects is None:
    example = captions.object_phrases(shapes_scene.SceneObject(0, 0, 0, 0, 0))[0]
    raise ValueError(
        f"cannot parse {text!r} as a shapes_video caption: expected up to "
        f"{shapes_scene.MAX_OBJECTS} object phrases like {example!r} joined by one of "
        f"{captions.JOINERS}")
  return objects
