"""Scene sampling for the procedural `shapes_video` dataset: attributes and trajectories.

The dataset exists to make Lumiere's central claim testable (SPEC §1): keyframes plus temporal
super-resolution cannot recover fast or periodic motion, a whole-clip model can. So the
bouncing motions are chosen to be visible at the frame rate a model trains on and to *alias*
at the rate of its keyframes (`benchmarks/shapes_aliasing.py` measures it):

* Motion is defined in real time (fractions of the frame size per second) and converted to
  pixels per frame with the clip's fps, so configs with other fps show the same movie.
* Linear motions (left / right / up / down) wrap around the frame (a torus), so they are
  periodic too. At 16 fps and resolution R:
    slow  = R / 128 px/frame  (0.25 px/frame at R=32: sub-pixel, needs anti-aliasing)
    quick = 3 R / 32 px/frame (3 px/frame at R=32, 6 at 64, 12 at 128); its wrap period is
            32 / 3 ~ 10.7 frames.
  A straight line is recovered from any two keyframes less than R / 2 apart, so these do not
  alias at the keyframe intervals in use; they test direction and speed.
* Bouncing is |sin| motion (a ball hopping on the floor) with period 0.3125 s (quick) or
  0.4375 s (slow): 5 and 7 frames at 16 fps, 2.5 and 3.5 at 8 fps (the quick start's rate;
  both above the 2 frames a clip needs to show a period). Keyframes every 2 frames at 8 fps
  (4 fps) sample them 1.25 and 1.75 times per period, under Nyquist's 2: the keyframes show a
  slower bounce than the caption asks for (a wagon-wheel effect). At 16 fps the same holds
  for keyframes every 4 frames.
At 32 fps the per-frame motion halves and the pipeline's stride-2 sampling restores 16 fps.

Sizes: `SIZE_RADIUS` makes the four shapes differ in many pixels at 32 px (the T2I stage must
see the shape word change the loss), and `scene_positions` keeps a scene's objects apart where
their paths allow, so they can be read in every frame.

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

# Size radius as a fraction of the frame size (a circle's radius, a square's half-side). Large
# enough that the four shapes differ in many pixels at 32 px (dataset 2.0.0; 1.0.0 used 0.09 /
# 0.15, where a small circle and square differed in no pixel at 0.5 coverage), small enough
# that the largest bouncing object stays inside the frame (0.55 R >= 2.35 r).
SIZE_RADIUS = {"small": 0.18, "large": 0.23}
# Largest half-extent of any shape relative to its size radius (the triangle's and diamond's
# circumradius; `shapes_render` draws with it).
MAX_HALF_EXTENT = 1.15
# Distance (in size radii) kept between an object's centre and the frame edge where it must
# stay whole (bouncing and static objects): the half-extent plus a sliver for anti-aliasing.
_EDGE_MARGIN = MAX_HALF_EXTENT + 0.05
# Placement of a scene's objects (`scene_positions`): trajectories tried, and the
# clearance (px) between bounding circles that ends the search.
_PLACEMENT_TRIES = 64
_PLACEMENT_GAP = 1.0
# Linear speed in frame sizes per second (16 fps reference: R/128 and 3R/32 px/frame).
LINEAR_SPEED = {"slow": 16.0 / 128.0, "quick": 16.0 * 3.0 / 32.0}
# Bounce period in seconds (5 and 7 frames at 16 fps, 2.5 and 3.5 at 8 fps).
BOUNCE_PERIOD = {"quick": 0.3125, "slow": 0.4375}
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


def wrap_to_frame(values, resolution: int) -> np.ndarray:
  """Positions on the torus of size ``resolution`` normalised into ``[0, resolution)``.

  ``np.mod`` alone can return ``resolution`` itself (``-1e-17 % 32 == 32.0``) or a value a few
  ulps below it, depending on how the CPU rounded what came before; a position that close to
  the seam is the seam, so it maps to 0. Float dtypes are kept (Python floats become float64).
  """
  values = np.asarray(values)
  if not np.issubdtype(values.dtype, np.floating):
    values = values.astype(np.float64)
  values = np.mod(values, resolution)
  eps = 8 * np.finfo(values.dtype).eps * resolution
  return np.where(values >= resolution - eps, 0, values).astype(values.dtype)


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
    x = np.full_like(t, rng.uniform(_EDGE_MARGIN * r, resolution - _EDGE_MARGIN * r))
    floor = resolution - _EDGE_MARGIN * r
    phase = rng.uniform(0.0, 1.0)
    height = BOUNCE_HEIGHT * resolution
    y = floor - height * np.abs(np.sin(np.pi * (t / bounce_period_frames(speed, fps) + phase)))
  else:
    v = speed_px_per_frame(speed, resolution, fps)
    x0, y0 = rng.uniform(0.0, resolution, size=2)
    dx, dy = {"left": (-v, 0.0), "right": (v, 0.0), "up": (0.0, -v), "down": (0.0, v)}[motion]
    x = x0 + dx * t
    y = y0 + dy * t
    # Wrapped after the cast: a float64 just below the seam can round up to it in float32.
    return wrap_to_frame(np.stack([x, y], axis=-1).astype(np.float32), resolution)
  return np.stack([x, y], axis=-1).astype(np.float32)


def static_position(obj: SceneObject, rng: np.random.Generator, resolution: int) -> np.ndarray:
  """A position ``[2]`` that keeps the whole object inside the frame (image variant)."""
  margin = _EDGE_MARGIN * obj.radius(resolution)
  return rng.uniform(margin, resolution - margin, size=2).astype(np.float32)


def _min_gap(a: SceneObject, a_positions: np.ndarray, b: SceneObject, b_positions: np.ndarray,
             resolution: int) -> float:
  """Smallest distance (px) over frames between the two objects' bounding circles.

  Distances are taken on the torus, which is exact when either object wraps and errs on the
  safe side (shorter) when neither does.
  """
  delta = a_positions.astype(np.float64) - b_positions  # t 2
  delta = (delta + resolution / 2.0) % resolution - resolution / 2.0
  extents = MAX_HALF_EXTENT * (a.radius(resolution) + b.radius(resolution))
  return float(np.linalg.norm(delta, axis=-1).min() - extents)


def scene_positions(objects: list[SceneObject], rng: np.random.Generator, frames: int,
                    resolution: int, fps: float | None, image: bool = False) -> np.ndarray:
  """Positions ``[num_objects, frames, 2]`` of a scene whose objects do not overlap if possible.

  Objects large enough to read their shape overlap often on a 32-px torus, and an object
  hidden behind another cannot be read (by the detector, or by the model learning from it).
  So the scene draws all trajectories (static positions for ``image``) up to
  `_PLACEMENT_TRIES` times and keeps the first draw whose objects stay `_PLACEMENT_GAP` px
  apart in every frame, else the draw that comes closest. Objects crossing each other's path
  (a quick left and a quick down) may have no such draw. Only positions change; the objects,
  and so the splits and held-out triples, are as `sample_objects` drew them.
  """
  def draw(obj: SceneObject) -> np.ndarray:
    if image:
      return static_position(obj, rng, resolution)[None]  # 1 2
    return trajectory(obj, rng, frames, resolution, fps)  # t 2

  best, best_gap = None, -np.inf
  for _ in range(_PLACEMENT_TRIES if len(objects) > 1 else 1):
    candidate = [draw(obj) for obj in objects]
    gap = min((_min_gap(objects[i], candidate[i], objects[j], candidate[j], resolution)
               for i in range(len(objects)) for j in range(i)), default=np.inf)
    if gap > best_gap:
      best, best_gap = candidate, gap
    if gap >= _PLACEMENT_GAP:
      break
  return np.stack(best)
