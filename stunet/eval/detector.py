"""Analytic detector for `shapes_video` clips: objects, attributes and motion (SPEC §1, §6).

The evaluation of generated samples needs to read back what a clip shows without a learned
model, so the detector inverts the dataset's renderer (`shapes_render`):

* Pixels: the renderer composites ``bg + alpha (colour - bg)`` with an anti-aliased coverage
  ``alpha``. Projecting a pixel onto each palette colour's line from the background gives that
  colour's ``alpha`` and a residual; the colour with the smallest residual owns the pixel.
  Pixels near the background are background; pixels far from every line are 'unexplained'
  (noise, wrong background, blends of overlapping objects).
* Objects: per frame and colour, connected components of owned pixels on the torus (linear
  motion wraps at the frame edges). A component's coverage map gives its area and its
  centroid (computed after rolling the frame so the object does not straddle an edge).
* Shape and size: for each shape, the radius that gives the observed area, then the renderer's
  own coverage at that centroid and radius; the shape with the smallest L1 misfit wins, and
  its radius picks the size class. Components whose best misfit is large are not objects.
* Tracks: one per palette colour (a caption never repeats a colour). Shape and size are the
  per-frame majority; motion, speed and period come from `motion.classify`.

A clip with no object-like component reports ``detected=False`` with a reason (blank frames,
noise, blobs that fit no shape); a frozen clip reports its objects with motion 'none'.
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import numpy as np
from scipy import ndimage

from stunet.data import shapes_render
from stunet.data import shapes_scene
from stunet.eval import motion as motion_lib

# RGB distance below which a pixel is background (about 5% coverage of the dimmest colour).
_BACKGROUND_TOLERANCE = 12.0
# RGB distance from the nearest palette line beyond which a pixel is unexplained.
_LINE_TOLERANCE = 40.0
# Largest L1 misfit (relative to the area) of the best shape template for an object.
FIT_TOLERANCE = 0.35
# Object areas may deviate this much from the dataset's smallest / largest shape.
_AREA_SLACK = (0.4, 2.5)
# A track must be present in this fraction of frames (and at least 2).
_MIN_PRESENCE = 0.25
# An object touching another is still read from a frame if its misfit is below this.
_OCCLUDED_FIT = 0.08
# ...or if it keeps this fraction of its area in frames where it touches nothing.
_OCCLUDED_AREA = 0.93
# Motion is read from the unoccluded frames if they are at least this fraction of the present
# ones (and >= 3), else from all.
_MIN_CLEAN = 0.5
# A frame with more unexplained pixels than this fraction is not a shapes_video frame.
_MAX_UNEXPLAINED = 0.2

_BACKGROUND = np.asarray(shapes_scene.BACKGROUND, np.float64)
_DIRECTIONS = np.asarray([shapes_scene.COLOURS[c] for c in shapes_scene.COLOUR_NAMES],
                         np.float64) - _BACKGROUND  # k 3


@functools.cache
def unit_area(shape: str) -> float:
  """Area of ``shape`` at size radius 1, measured on the renderer itself."""
  radius, resolution = 100.0, 256
  centre = np.full((1, 2), resolution / 2.0, np.float32)
  return float(shapes_render.coverage(shape, centre, radius, resolution, wrap=False).sum()
               / radius ** 2)


def area_range(resolution: int) -> tuple[float, float]:
  """Accepted object areas (px^2) at ``resolution``."""
  areas = [unit_area(s) * (shapes_scene.SIZE_RADIUS[z] * resolution) ** 2
           for s in shapes_scene.SHAPES for z in shapes_scene.SIZES]
  return _AREA_SLACK[0] * min(areas), _AREA_SLACK[1] * max(areas)


@dataclasses.dataclass(frozen=True)
class FrameObject:
  """One object seen in one frame.

  Attributes:
    colour / shape / size: vocabulary words.
    centroid: (x, y) coverage-weighted centre in pixels, in ``[0, resolution)``.
    area: summed coverage in px^2.
    radius: size radius (px) that gives ``area`` for ``shape``.
    misfit: L1 distance between the coverage and the shape template, relative to the area.
    occluded: the object touches another object or unexplained pixels, so part of it may be
      hidden and its centroid and shape biased.
  """
  colour: str
  shape: str
  size: str
  centroid: tuple[float, float]
  area: float
  radius: float
  misfit: float
  occluded: bool = False


@dataclasses.dataclass(frozen=True)
class ObjectTrack:
  """One object over the clip (clip-level attributes are per-frame majorities).

  Attributes:
    colour / shape / size: attributes; shape and size are the majority over present frames.
    present: ``[t]`` bool, the object was found in the frame.
    shapes: per-frame shape ('' where absent).
    centroids: ``[t, 2]`` per-frame centroids, NaN where absent.
    shape_stability: fraction of present (unoccluded, where there are any) frames showing the
      majority shape.
    size_stability: the same for the size.
    motion: the `motion.MotionEstimate` (from unoccluded frames when there are >= 3).
  """
  colour: str
  shape: str
  size: str
  present: np.ndarray
  shapes: tuple[str, ...]
  centroids: np.ndarray
  shape_stability: float
  size_stability: float
  motion: motion_lib.MotionEstimate

  @property
  def presence(self) -> float:
    return float(self.present.mean())

  def to_dict(self) -> dict:
    return {
        "colour": self.colour, "shape": self.shape, "size": self.size,
        "motion": self.motion.motion, "speed": self.motion.speed,
        "presence": self.presence, "shape_stability": self.shape_stability,
        "size_stability": self.size_stability,
        "velocity_px_per_frame": list(self.motion.velocity),
        "period_frames": self.motion.period_frames, "periodic": self.motion.periodic,
        "linear_rms_px": self.motion.linear_rms, "bounce_rms_px": self.motion.bounce_rms,
        "motion_reason": self.motion.reason,
    }


@dataclasses.dataclass(frozen=True)
class ClipDetection:
  """What the detector read from one clip.

  Attributes:
    detected: at least one object was tracked.
    reason: why nothing was detected ('' when detected).
    objects: tracks, most present first.
    frames: per frame, the objects seen in it (tracked or not).
    unexplained: ``[t]`` fraction of pixels that are neither background nor a palette blend.
  """
  detected: bool
  reason: str
  objects: tuple[ObjectTrack, ...]
  frames: tuple[tuple[FrameObject, ...], ...]
  unexplained: np.ndarray

  def to_dict(self) -> dict:
    return {"detected": self.detected, "reason": self.reason,
            "objects": [o.to_dict() for o in self.objects],
            "unexplained_fraction": float(self.unexplained.mean())}


def pixel_ownership(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-pixel palette analysis of ``[t h w 3]`` frames.

  Returns:
    owner: ``[t h w]`` palette index owning the pixel, -1 for background, -2 unexplained.
    alpha: ``[t h w k]`` coverage of each palette colour, clipped to [0, 1].
    background: ``[t h w]`` bool, the pixel is background.
  """
  offset = frames.astype(np.float64) - _BACKGROUND  # t h w 3
  alpha = np.clip(offset @ _DIRECTIONS.T / (_DIRECTIONS ** 2).sum(1), 0.0, 1.0)  # t h w k
  residual = np.linalg.norm(offset[..., None, :] - alpha[..., None] * _DIRECTIONS, axis=-1)
  owner = residual.argmin(-1)
  background = np.linalg.norm(offset, axis=-1) < _BACKGROUND_TOLERANCE
  owner = np.where(residual.min(-1) < _LINE_TOLERANCE, owner, -2)
  owner = np.where(background, -1, owner)
  return owner, alpha, background


def _torus_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
  """8-connected components of a 2-D mask whose opposite edges touch."""
  labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
  if count < 2:
    return labels, count
  parent = list(range(count + 1))

  def find(i: int) -> int:
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for a, b in ((labels[0, :], labels[-1, :]), (labels[:, 0], labels[:, -1])):
    for i, j in zip(a, b):
      if i and j:
        parent[find(i)] = find(j)
  roots = np.asarray([find(i) for i in range(count + 1)])
  _, relabel = np.unique(roots, return_inverse=True)
  return relabel[labels], int(relabel.max())


def _dilate_torus(mask: np.ndarray) -> np.ndarray:
  out = mask.copy()
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      out |= np.roll(mask, (dy, dx), axis=(0, 1))
  return out


def _torus_centroid(weights: np.ndarray) -> tuple[float, float] | None:
  """Centroid (x, y) of a coverage map on the torus; None if it spans a whole axis."""
  centre = []
  for axis in (0, 1):  # x from the column profile, y from the row profile.
    profile = weights.sum(axis=axis)
    empty = profile <= 1e-9
    if not empty.any():
      return None
    # Roll the middle of the longest empty run to index 0 so the object sits in one piece.
    size = len(profile)
    best_len, best_mid = 0, 0
    doubled = np.concatenate([empty, empty])
    run = 0
    for i, e in enumerate(doubled):
      run = run + 1 if e else 0
      if min(run, size) > best_len:
        best_len, best_mid = min(run, size), i - min(run, size) // 2
    shift = best_mid % size
    rolled = np.roll(profile, -shift)
    coord = (np.arange(size) + 0.5) @ rolled / rolled.sum()
    # Exactly on the seam, the rolled centroid can land a rounding error below 0 or above
    # `size` (31.999999999999996 on some CPUs): normalise into [0, size).
    centre.append(float(shapes_scene.wrap_to_frame(coord + shift, size)))
  return centre[0], centre[1]


def _read_object(coverage: np.ndarray, colour: str, resolution: int) -> FrameObject | None:
  """Shape, size and centroid of one component's coverage map, None if it is no object."""
  area = float(coverage.sum())
  low, high = area_range(resolution)
  if not low <= area <= high:
    return None
  centroid = _torus_centroid(coverage)
  if centroid is None:
    return None
  position = np.asarray([centroid], np.float32)
  best = None
  for shape in shapes_scene.SHAPES:
    radius = float(np.sqrt(area / unit_area(shape)))
    template = shapes_render.coverage(shape, position, radius, resolution, wrap=True)[0]
    misfit = float(np.abs(coverage - template).sum() / area)
    if best is None or misfit < best[0]:
      best = (misfit, shape, radius)
  misfit, shape, radius = best
  if misfit > FIT_TOLERANCE:
    return None
  size = min(shapes_scene.SIZES, key=lambda z: abs(
      np.log(radius / (shapes_scene.SIZE_RADIUS[z] * resolution))))
  return FrameObject(colour, shape, size, centroid, area, radius, misfit)


def detect_frames(frames: np.ndarray) -> tuple[list[list[FrameObject]], np.ndarray]:
  """Objects per frame of a clip ``[t h w 3]`` uint8, and the unexplained fraction per frame."""
  owner, alpha, background = pixel_ownership(frames)
  resolution = frames.shape[1]
  unexplained = (owner == -2).mean(axis=(1, 2))
  per_frame = []
  for f in range(frames.shape[0]):
    found = []
    if unexplained[f] <= _MAX_UNEXPLAINED:
      for k in np.unique(owner[f][owner[f] >= 0]):
        labels, count = _torus_components(owner[f] == k)
        for c in range(1, count + 1):
          # Faint edge pixels read as background still carry coverage: keep them.
          region = _dilate_torus(labels == c) & ((owner[f] == k) | background[f])
          obj = _read_object(np.where(region, alpha[f, ..., k], 0.0),
                             shapes_scene.COLOUR_NAMES[k], resolution)
          if obj is not None:
            halo = _dilate_torus(region)
            others = (owner[f] == -2) | ((owner[f] >= 0) & (owner[f] != k))
            found.append(dataclasses.replace(obj, occluded=bool((halo & others).any())))
    per_frame.append(found)
  return per_frame, unexplained


def _reliable(obj: FrameObject, full_area: float) -> bool:
  """Whether an object's centroid and shape can be trusted in this frame.

  An object touching another is the one on top (so not hidden) if it fits its template closely
  or keeps the area it has where it touches nothing.
  """
  return (not obj.occluded or obj.misfit <= _OCCLUDED_FIT
          or obj.area >= _OCCLUDED_AREA * full_area)


def _majority(values: list[str]) -> tuple[str, float]:
  word, count = collections.Counter(values).most_common(1)[0]
  return word, count / len(values)


def detect(video, fps: float) -> ClipDetection:
  """Reads a `shapes_video`-style clip.

  Args:
    video: uint8 ``[t h w 3]`` with square frames.
    fps: the clip's frames per second (speed classes are defined in real time).

  Returns:
    The `ClipDetection`.
  """
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise ValueError(f"video must be uint8 [t, h, w, 3], got {video.dtype} {video.shape}")
  t, h, w, _ = video.shape
  if h != w:
    raise ValueError(f"frames must be square (shapes_video), got {h}x{w}")
  per_frame, unexplained = detect_frames(video)
  by_colour: dict[str, list[FrameObject | None]] = {}
  for f, found in enumerate(per_frame):
    # Several blobs of one colour: the largest is the object, the rest are artefacts.
    for obj in sorted(found, key=lambda o: -o.area):
      by_colour.setdefault(obj.colour, [None] * t)
      if by_colour[obj.colour][f] is None:
        by_colour[obj.colour][f] = obj
  tracks = []
  min_frames = max(2, int(np.ceil(_MIN_PRESENCE * t)))
  for colour, seen in by_colour.items():
    present = np.asarray([o is not None for o in seen])
    if present.sum() < min_frames:
      continue
    objs = [o for o in seen if o is not None]
    # Overlapping objects hide parts of each other: read them from unoccluded frames if any.
    free = [o.area for o in objs if not o.occluded]
    full_area = float(np.median(free)) if free else np.inf
    clean = [o for o in objs if _reliable(o, full_area)] or objs
    shape, shape_stability = _majority([o.shape for o in clean])
    size, size_stability = _majority([o.size for o in clean])
    centroids = np.full((t, 2), np.nan)
    centroids[present] = [o.centroid for o in objs]
    clean_centroids = np.where(
        np.asarray([o is not None and _reliable(o, full_area) for o in seen])[:, None], centroids,
        np.nan)
    # Too few trustworthy frames say too little (three frames of a bounce can sit at one
    # height): then the occluded sightings, biased by a pixel or so, are the better evidence.
    if np.isfinite(clean_centroids[:, 0]).sum() >= max(3, _MIN_CLEAN * present.sum()):
      track_centroids = clean_centroids
    else:
      track_centroids = centroids
    tracks.append(ObjectTrack(
        colour=colour, shape=shape, size=size, present=present,
        shapes=tuple(o.shape if o else "" for o in seen), centroids=centroids,
        shape_stability=shape_stability, size_stability=size_stability,
        motion=motion_lib.classify(track_centroids, h, fps, unwrap_from=centroids)))
  tracks.sort(key=lambda o: -o.present.sum())
  frames = tuple(tuple(f) for f in per_frame)
  if tracks:
    return ClipDetection(True, "", tuple(tracks), frames, unexplained)
  return ClipDetection(False, _failure_reason(video, unexplained, per_frame, min_frames),
                       (), frames, unexplained)


def _failure_reason(video: np.ndarray, unexplained: np.ndarray,
                    per_frame: list[list[FrameObject]], min_frames: int) -> str:
  offset = np.linalg.norm(video.astype(np.float64) - _BACKGROUND, axis=-1)
  if (offset < _BACKGROUND_TOLERANCE).all():
    return "blank: every pixel is the background"
  noisy = int((unexplained > _MAX_UNEXPLAINED).sum())
  if noisy > len(unexplained) // 2:
    return (f"not a shapes_video scene: in {noisy} of {len(unexplained)} frames more than "
            f"{_MAX_UNEXPLAINED:.0%} of the pixels are neither background nor a palette "
            f"colour (noise or a wrong background)")
  seen = sum(bool(f) for f in per_frame)
  if seen:
    return (f"objects seen in only {seen} frame(s), none of one colour in >= {min_frames} "
            f"frames")
  return (f"no object: no blob has a plausible area and a shape misfit below "
          f"{FIT_TOLERANCE}")
