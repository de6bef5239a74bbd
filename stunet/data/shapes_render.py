"""Anti-aliased rasteriser for the `shapes_video` dataset (SPEC §1: a motion benchmark).

Each shape is a signed distance field evaluated at pixel centres; coverage is a one-pixel
linear ramp across the boundary, ``clip(0.5 - d, 0, 1)``. This gives smooth sub-pixel motion
(slow objects move a quarter pixel per frame) and, because every shape is point-symmetric or
3-fold symmetric about its centre, the coverage-weighted centroid equals the stored position.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stunet.data import shapes_scene

# Half-extent relative to the size radius. The circle is inscribed in the square (half-side 1)
# so the two differ in four whole corners, not in a sliver; the triangle and diamond reach a
# bit further so all four have similar visual weight. `shapes_scene.MAX_HALF_EXTENT` is the
# largest of these (frame margins of bouncing and static objects).
_SQUARE_HALF_SIDE = 1.0
_POLYGON_CIRCUMRADIUS = shapes_scene.MAX_HALF_EXTENT


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
  """Signed distance (pixels, negative inside) to a shape centred at the origin."""
  if shape == "circle":
    return np.sqrt(dx * dx + dy * dy) - radius
  if shape == "square":
    half = _SQUARE_HALF_SIDE * radius
    qx, qy = np.abs(dx) - half, np.abs(dy) - half
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0)
  if shape == "diamond":
    half_diagonal = _POLYGON_CIRCUMRADIUS * radius
    return (np.abs(dx) + np.abs(dy) - half_diagonal) / np.sqrt(2.0)
  if shape == "triangle":
    # Equilateral, pointing up, centred on its centroid (Inigo Quilez's exact SDF; its y axis
    # points up, ours down).
    k = np.sqrt(3.0)
    half_side = _POLYGON_CIRCUMRADIUS * radius * k / 2.0
    px = np.abs(dx) - half_side
    py = -dy + half_side / k
    fold = px + k * py > 0.0
    px, py = (np.where(fold, (px - k * py) / 2.0, px), np.where(fold, (-k * px - py) / 2.0, py))
    px = px - np.clip(px, -2.0 * half_side, 0.0)
    return -np.sqrt(px * px + py * py) * np.sign(py)
  raise ValueError(f"unknown shape {shape!r}; expected one of {shapes_scene.SHAPES}")


def coverage(shape: str, positions: np.ndarray, radius: float, resolution: int,
             wrap: bool) -> np.ndarray:
  """Fraction of each pixel covered by the shape, ``[t, h, w]`` float32 in [0, 1].

  Args:
    shape: one of `shapes_scene.SHAPES`.
    positions: ``[t, 2]`` centre (x, y) per frame, in pixels.
    radius: size radius in pixels.
    resolution: frame height and width.
    wrap: also draw the copies shifted by +-resolution (toroidal motion).
  """
  centres = np.arange(resolution, dtype=np.float32) + 0.5
  offsets = (-resolution, 0, resolution) if wrap else (0,)
  distance = None
  for ox in offsets:
    for oy in offsets:
      dx = centres[None, None, :] - (positions[:, 0, None, None] + ox)  # t 1 w
      dy = centres[None, :, None] - (positions[:, 1, None, None] + oy)  # t h 1
      dx, dy = np.broadcast_arrays(dx, dy)
      d = _signed_distance(shape, dx, dy, radius)
      distance = d if distance is None else np.minimum(distance, d)
  return np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)


def render(objects: Sequence[shapes_scene.SceneObject], positions: np.ndarray,
           resolution: int) -> np.ndarray:
  """Composites the objects (later ones on top) over the background.

  Args:
    objects: the scene's objects.
    positions: ``[num_objects, t, 2]`` centres per object and frame.
    resolution: frame size.

  Returns:
    ``[t, h, w, 3]`` uint8 frames.
  """
  frames = positions.shape[1]
  canvas = np.broadcast_to(np.asarray(shapes_scene.BACKGROUND, np.float32),
                           (frames, resolution, resolution, 3)).copy()  # t h w c
  for obj, obj_positions in zip(objects, positions):
    wrap = shapes_scene.MOTIONS[obj.motion] != "bouncing"
    alpha = coverage(shapes_scene.SHAPES[obj.shape], obj_positions, obj.radius(resolution),
                     resolution, wrap)[..., None]  # t h w 1
    colour = np.asarray(shapes_scene.COLOURS[shapes_scene.COLOUR_NAMES[obj.colour]], np.float32)
    canvas = canvas * (1.0 - alpha) + colour * alpha
  return np.round(canvas).astype(np.uint8)
