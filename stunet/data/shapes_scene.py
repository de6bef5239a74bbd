"""Scene sampling for the procedural `shapes_video` dataset: attributes and trajectories.

The dataset exists to make Lumiere's central claim testable (SPEC §1): keyframes plus temporal
super-resolution cannot recover fast or periodic motion, a whole-clip model can. So the quick
and bouncing motions are chosen to *alias* when a clip is sampled every 4-8 frames:

* Motion is defined in real time (fractions of the frame size per second) and converted to
  pixels per frame with the clip's fps, so configs with other fps show the same movie.
* Linear motions (left / right / up / down) wrap around the frame (a torus), so they are
  periodic too. At 16 fps and resolution R:
    slow  = R / 128 px/frame  (0.25 px/frame at R=32: sub-pixel, needs anti-aliasing)
    quick = 3 R / 32 px/frame (3 px/frame at R=32, 6 at 64, 12 at 128). Between keyframes
            4 frames apart it moves 0.375 R, more than the largest object's diameter (0.345 R),
            so consecutive keyframes share no pixels of the object and its wrap period
            (32 / 3 ~ 10.7 frames) is shorter than two keyframe intervals of 8 frames.
* Bouncing is |sin| motion (a ball hopping on the floor) with period 0.25 s (quick) or
  0.4375 s (slow): 4 and 7 frames at 16 fps. Both are shorter than twice a keyframe interval of
  4 frames (Nyquist), so keyframes every 4-8 frames alias them; quick bouncing sampled every
  4 or 8 frames even looks static (the wagon-wheel effect).
At 8 fps the per-frame motion doubles; at 32 fps it halves and the guarantee holds after the
pipeline's stride-2 sampling to 16 fps.

Positions are object centres (the centroid of the shape's area) in pixels, x to the right and
y down, with pixel ``(i, j)`` covering ``[j, j+1) x [i, i+1)`` (so its centre is at
``(j + 0.5, i + 0.5)``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
# RGB, chosen to be far apart from each other and from the background.
COLOURS = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 85, 240),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 205),
    "orange": (250, 140, 25),
    "cyan": (40, 215, 225),
    "white": (245, 245, 245),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUND = (30, 30, 30)
SIZES = ("small", "large")
MOTIONS = ("left", "right", "up", "down", "bouncing")
SPEEDS = ("slow", "quick")
MAX_OBJECTS = 2

# Object half-extent as a fraction of the frame size (radius for a circle).
SIZE_RADIUS = {"small": 0.09, "large": 0.15}
# Linear speed in frame sizes per second (16 fps reference: R/128 and 3R/32 px/frame).
LINEAR_SPEED = {"slow": 16.0 / 128.0, "quick": 16.0 * 3.0 / 32.0}
# Bounce period in seconds (4 and 7 frames at 16 fps).
BOUNCE_PERIOD = {"quick": 0.25, "slow": 0.4375}
# Bounce height as a fraction of the frame size.
BOUNCE_HEIGHT = 0.45

# (colour, shape, motion) triples that only the test split contains. Every motion and
# shape is held out at least once, so the test measures compositional generalisation.
HELD_OUT = (
    ("red", "circle", "left"),
    ("blue", "square", "up"),
    ("green", "triangle", "bouncing"),
    ("yellow", "diamond", "right"),
    ("purple", "circle", "down"),
    ("orange", "square", "bouncing"),
)


@dataclasses.dataclass(frozen=True)
class SceneObject:
  """One object's ground-truth attributes (indices into the vocabularies above)."""
  shape: int
  colour: int
  size: int
  motion: int
  speed: int

  @property
  def triple(self) -> tuple[str, str, str]:
    return COLOUR_NAMES[self.colour], SHAPES[self.shape], MOTIONS[self.motion]

  def radius(self, resolution: int) -> float:
    return SIZE_RADIUS[SIZES[self.size]] * resolution


def is_held_out(obj: SceneObject) -> bool:
  return obj.triple in HELD_OUT


def _random_object(rng: np.random.Generator) -> SceneObject:
  return SceneObject(
      shape=int(rng.integers(len(SHAPES))), colour=int(rng.integers(len(COLOURS))),
      size=int(rng.integers(len(SIZES))), motion=int(rng.integers(len(MOTIONS))),
      speed=int(rng.integers(len(SPEEDS))))


def _held_out_object(rng: np.random.Generator) -> SceneObject:
  colour, shape, motion = HELD_OUT[int(rng.integers(len(HELD_OUT)))]
  return SceneObject(
      shape=SHAPES.index(shape), colour=COLOUR_NAMES.index(colour),
      size=int(rng.integers(len(SIZES))), motion=MOTIONS.index(motion),
      speed=int(rng.integers(len(SPEEDS))))


def sample_objects(rng: np.random.Generator, split: str) -> list[SceneObject]:
  """One or two objects with distinct colours; held-out triples only in ``test``.

  Test clips always contain a held-out triple (as the first object); train and validation
  clips never contain one.
  """
  num_objects = int(rng.integers(1, MAX_OBJECTS + 1))
  objects = []
  if split == "test":
    objects.append(_held_out_object(rng))
  while len(objects) < num_objects:
    obj = _random_object(rng)
    if split != "test" and is_held_out(obj):
      continue
    # Distinct colours keep the caption unambiguous and the objects separable for evaluation.
    if any(obj.colour == other.colour for other in objects):
      continue
    objects.append(obj)
  return objects


def speed_px_per_frame(speed: str, resolution: int, fps: float) -> float:
  """Linear motion speed in pixels per frame."""
  return LINEAR_SPEED[speed] * resolution / fps


def bounce_period_frames(speed: str, fps: float) -> float:
  return BOUNCE_PERIOD[speed] * fps


def trajectory(obj: SceneObject, rng: np.random.Generator, frames: int, resolution: int,
               fps: float) -> np.ndarray:
  """Per-frame centre positions ``[frames, 2]`` (x, y) in pixels (float32).

  Linear motions are returned wrapped into ``[0, resolution)``; the renderer draws wrapped
  copies so an object leaving one edge re-enters at the opposite one.
  """
  r = obj.radius(resolution)
  motion, speed = MOTIONS[obj.motion], SPEEDS[obj.speed]
  t = np.arange(frames, dtype=np.float64)
  if motion == "bouncing":
    x = np.full_like(t, rng.uniform(1.2 * r, resolution - 1.2 * r))
    floor = resolution - 1.2 * r
    phase = rng.uniform(0.0, 1.0)
    height = BOUNCE_HEIGHT * resolution
    y = floor - height * np.abs(np.sin(np.pi * (t / bounce_period_frames(speed, fps) + phase)))
  else:
    v = speed_px_per_frame(speed, resolution, fps)
    x0, y0 = rng.uniform(0.0, resolution, size=2)
    dx, dy = {"left": (-v, 0.0), "right": (v, 0.0), "up": (0.0, -v), "down": (0.0, v)}[motion]
    x = np.mod(x0 + dx * t, resolution)
    y = np.mod(y0 + dy * t, resolution)
  return np.stack([x, y], axis=-1).astype(np.float32)


def static_position(obj: SceneObject, rng: np.random.Generator, resolution: int) -> np.ndarray:
  """A position ``[2]`` that keeps the whole object inside the frame (image variant)."""
  margin = 1.2 * obj.radius(resolution)
  return rng.uniform(margin, resolution - margin, size=2).astype(np.float32)
