"""Motion of one tracked object: direction, speed class and bounce period (SPEC §1 benchmark).

`shapes_video` objects either move linearly at a constant speed on a torus (left / right /
up / down, wrapping at the frame edges) or hop on the floor, ``y = floor - h |sin(pi (t / P +
phase))|`` with x fixed. Given an object's per-frame centroids we fit both models by least
squares and keep the one that explains the track:

* linear: unwrap the wrapped positions (a frame's step is shorter than half the frame), fit
  ``p = p0 + v t`` per axis; direction is the dominant axis' sign, speed the class whose
  px/frame (`shapes_scene.speed_px_per_frame` at the clip's resolution and fps) is nearest in
  log scale.
* bouncing: x constant, y a |sin| of period ``P`` searched over ``[2, T - 1]`` frames (periods
  under 2 frames alias onto longer ones at one sample per frame; a bounce must turn within the
  clip, or a long arc would pass for a line); speed is the class whose
  `shapes_scene.bounce_period_frames` is nearest in log scale.

A track that moves less than half as far as the slow speed would over the observed frames is reported as motion
'none' (a frozen clip), never as a guess.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stunet.data import shapes_scene

# Bouncing must explain the track at least this much better than a straight line...
_BOUNCE_GAIN = 2.0
# ...and hop by at least this fraction of the dataset's bounce height.
_MIN_HOP = 0.25
# A track moving less than this fraction of the slow speed's displacement over the clip is static.
_STATIC_FRACTION = 0.5
_PHASES = 64
# Mean squared misfit (px^2) under which two bounce fits count as equally good.
_TIE_PX2 = 0.002
# Consecutive steps within this range (px) of each other are a constant velocity.
_CONSTANT_STEP_PX = 0.5


@dataclasses.dataclass(frozen=True)
class MotionEstimate:
  """What an object's track says about its motion.

  Attributes:
    motion: one of `shapes_scene.MOTIONS`, or 'none' when no motion can be read.
    speed: one of `shapes_scene.SPEEDS`, or 'none'.
    velocity: linear-fit velocity (x, y) in px/frame (y down).
    period_frames: fitted bounce period for 'bouncing', the wrap-around period
      ``resolution / |v|`` for linear motion, NaN otherwise.
    periodic: the track repeats within the clip (a bounce or a wrap completes a period).
    linear_rms: RMS residual (px) of the straight-line fit.
    bounce_rms: RMS residual (px) of the best |sin| bounce fit.
    hop: fitted bounce height (px).
    displacement: largest distance (px) of the unwrapped track from its first position.
    reason: why motion is 'none' ('' otherwise).
  """
  motion: str
  speed: str
  velocity: tuple[float, float]
  period_frames: float
  periodic: bool
  linear_rms: float
  bounce_rms: float
  hop: float
  displacement: float
  reason: str = ""


def wrapped_step(delta: np.ndarray, resolution: int) -> np.ndarray:
  """Shortest signed step on a torus of size ``resolution``."""
  return (delta + resolution / 2.0) % resolution - resolution / 2.0


def unwrap(times: np.ndarray, positions: np.ndarray, resolution: int) -> np.ndarray:
  """``[n, 2]`` positions at increasing ``times`` with the torus wrap removed.

  Frames lost to occlusion leave gaps in which a quick object can travel more than half the
  frame, so each sample is unwrapped against a prediction from the median velocity of
  consecutive frames rather than against the previous sample alone.
  """
  steps = wrapped_step(np.diff(positions, axis=0), resolution)  # n-1 2
  gaps = np.diff(times)
  adjacent = gaps == 1
  velocity = np.zeros(2)
  # Only a constant step (linear motion) predicts across a gap; a bounce never wraps.
  if adjacent.any() and np.ptp(steps[adjacent], axis=0).max() < _CONSTANT_STEP_PX:
    velocity = steps[adjacent].mean(axis=0)
  out = [positions[0]]
  for i in range(1, len(times)):
    predicted = out[-1] + velocity * gaps[i - 1]
    out.append(predicted + wrapped_step(positions[i] - predicted, resolution))
  return np.stack(out)


def fit_line(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Least-squares ``values ~ a + b t`` per column; returns (slopes, residuals)."""
  basis = np.stack([np.ones_like(times), times], axis=1)  # n 2
  coef, *_ = np.linalg.lstsq(basis, values, rcond=None)
  return coef[1], values - basis @ coef


def fit_bounce(times: np.ndarray, y: np.ndarray, max_period: float,
               references: tuple[float, ...] = ()) -> tuple[float, float, np.ndarray]:
  """Best ``y ~ a - h |sin(pi (t / P + phase))|`` with ``h >= 0`` over a grid of P and phase.

  The grid spans ``[2, max_period]`` log-uniformly plus the ``references`` periods.

  Returns:
    (period, hop h, residuals).
  """
  periods = np.geomspace(2.0, max(max_period, 2.0), 400)
  periods = np.union1d(periods, [p for p in references if 2.0 <= p <= max_period])
  phases = np.arange(_PHASES) / _PHASES
  s = np.abs(np.sin(np.pi * (times[None, None, :] / periods[:, None, None]
                             + phases[None, :, None])))  # p f n
  # Closed-form least squares of y on [1, s] for every (period, phase).
  s_mean = s.mean(-1, keepdims=True)
  y_mean = y.mean()
  sc = s - s_mean
  var = (sc * sc).sum(-1)
  slope = np.where(var > 1e-12, (sc * (y - y_mean)).sum(-1) / np.maximum(var, 1e-12), 0.0)
  slope = np.minimum(slope, 0.0)  # y grows downwards: a hop lowers y.
  residual = (y - y_mean) - slope[..., None] * sc
  sse = (residual ** 2).sum(-1)
  # Sparse samples (frames lost to occlusion) can fit several periods equally well: take the
  # longest of the near-best fits, the simplest explanation.
  near = sse <= 1.05 * sse.min() + _TIE_PX2 * len(times)
  i = int(np.flatnonzero(near.any(axis=1)).max())
  j = int(np.argmin(np.where(near[i], sse[i], np.inf)))
  return float(periods[i]), float(-slope[i, j]), residual[i, j]


def _nearest_log(value: float, references: dict[str, float]) -> str:
  return min(references, key=lambda k: abs(np.log(value / references[k])))


def classify(centroids: np.ndarray, resolution: int, fps: float,
             unwrap_from: np.ndarray | None = None) -> MotionEstimate:
  """Motion of a track.

  Args:
    centroids: ``[t, 2]`` (x, y) pixel centroids per frame; NaN rows where the object is absent.
    resolution: frame size (the torus period of linear motion).
    fps: frames per second of the clip (speed classes are defined in real time).
    unwrap_from: optional ``[t, 2]`` track of the same object present in at least the frames
      of ``centroids`` (the detector's every sighting, ``centroids`` its trustworthy ones).
      The wrap is removed along it: a few samples far apart in time can be unwrapped onto
      any line (three frames of a quick bounce onto a line at 9 px/frame), the frames in
      between say which.

  Returns:
    The `MotionEstimate`.
  """
  centroids = np.asarray(centroids, np.float64)
  if centroids.ndim != 2 or centroids.shape[1] != 2:
    raise ValueError(f"centroids must be [t, 2], got shape {centroids.shape}")
  if fps <= 0:
    raise ValueError(f"fps must be > 0, got {fps}")
  frames = centroids.shape[0]
  present = np.isfinite(centroids).all(axis=1)
  times = np.flatnonzero(present).astype(np.float64)
  nan = float("nan")
  if len(times) < 3:
    return MotionEstimate("none", "none", (nan, nan), nan, False, nan, nan, nan, nan,
                          reason=f"object present in {len(times)} frame(s); need >= 3")
  if unwrap_from is None:
    track = unwrap(times, centroids[present], resolution)  # n 2
  else:
    unwrap_from = np.asarray(unwrap_from, np.float64)
    if unwrap_from.shape != centroids.shape:
      raise ValueError(f"unwrap_from must have the shape of centroids {centroids.shape}, got "
                       f"{unwrap_from.shape}")
    guide_present = np.isfinite(unwrap_from).all(axis=1)
    if not guide_present[present].all():
      raise ValueError("unwrap_from must be present in every frame centroids is")
    guide = np.full_like(unwrap_from, np.nan)
    guide[guide_present] = unwrap(np.flatnonzero(guide_present).astype(np.float64),
                                  unwrap_from[guide_present], resolution)
    track = guide[present] + wrapped_step(centroids[present] - unwrap_from[present], resolution)
  velocity, line_residual = fit_line(times, track)
  linear_rms = float(np.sqrt((line_residual ** 2).sum(1).mean()))
  # A bounce must turn within the clip: longer arcs would pass for straight lines.
  bounce_periods = {s: shapes_scene.bounce_period_frames(s, fps) for s in shapes_scene.SPEEDS}
  period, hop, y_residual = fit_bounce(times, track[:, 1], frames - 1.0,
                                       tuple(bounce_periods.values()))
  x_residual = track[:, 0] - track[:, 0].mean()
  bounce_rms = float(np.sqrt((y_residual ** 2 + x_residual ** 2).mean()))
  displacement = float(np.linalg.norm(track - track[0], axis=1).max())
  slow = shapes_scene.speed_px_per_frame("slow", resolution, fps)
  velocity_xy = (float(velocity[0]), float(velocity[1]))
  static_limit = _STATIC_FRACTION * slow * (times[-1] - times[0])
  if displacement < static_limit:
    return MotionEstimate(
        "none", "none", velocity_xy, nan, False, linear_rms, bounce_rms, hop, displacement,
        reason=f"static: the object moves {displacement:.3f} px over the clip, less than "
               f"{static_limit:.3f} px (half the slow speed's travel)")
  min_hop = _MIN_HOP * shapes_scene.BOUNCE_HEIGHT * resolution
  if bounce_rms * _BOUNCE_GAIN < linear_rms and hop >= min_hop:
    return MotionEstimate(
        "bouncing", _nearest_log(period, bounce_periods), velocity_xy, period,
        period <= frames - 1, linear_rms, bounce_rms, hop,
        displacement)
  vx, vy = velocity_xy
  if abs(vx) >= abs(vy):
    motion, speed_px = ("right" if vx > 0 else "left"), abs(vx)
  else:
    motion, speed_px = ("down" if vy > 0 else "up"), abs(vy)
  references = {s: shapes_scene.speed_px_per_frame(s, resolution, fps)
                for s in shapes_scene.SPEEDS}
  wrap_period = resolution / speed_px
  return MotionEstimate(
      motion, _nearest_log(speed_px, references), velocity_xy, wrap_period,
      wrap_period <= frames - 1, linear_rms, bounce_rms, hop, displacement)
