r"""`shapes_video` legibility and aliasing: do the shapes differ, which motions do keyframes alias?

Two tables, from the dataset's own renderer and trajectories (no training):

1. Shape separation: for every pair of shapes at one size and resolution, the pixels whose
   0.5-coverage masks differ (minimum over random sub-pixel centres) and the mean L1 distance
   of the anti-aliased coverage; dataset 1.0.0's sizes next to the current ones.
2. Aliasing per motion class at a used frame rate and keyframe interval k (the
   `keyframes_tsr` baseline keeps every k-th frame; `stage.tsr.keyframe_interval`): per-frame
   displacement, displacement between keyframes, the bounce period in keyframe intervals
   (< 2 violates Nyquist), the RMS error of linearly interpolating the frames between
   keyframes (on the torus for wrapping motions), and what the analytic detector
   (`stunet.eval.motion.classify`) reads from the keyframes alone.

  python -m benchmarks.shapes_aliasing > benchmarks/results/shapes_aliasing.md
"""

import contextlib
import itertools

from absl import app
from absl import flags
import numpy as np

from benchmarks import common
from stunet.data import shapes_render
from stunet.data import shapes_scene
from stunet.eval import motion as motion_lib

_RESOLUTION = flags.DEFINE_integer("resolution", 32, "Frame size of the aliasing table.")
_SAMPLES = flags.DEFINE_integer("samples", 200, "Random objects per motion class.")
_SECONDS = flags.DEFINE_float("seconds", 4.0, "Clip length (s) for the interpolation error.")
# (used fps, keyframe interval): the quick start (8 fps of the stored 16 fps clips), the
# quality config (16 fps), and keyframes at the quick start's 4 fps from 16 fps clips.
_SETTINGS = ((8, 2), (16, 2), (16, 4))
# Dataset 1.0.0's geometry, for the before/after table.
_V1 = {"size_radius": {"small": 0.09, "large": 0.15}, "square_half_side": 0.85}


@contextlib.contextmanager
def _geometry(size_radius: dict, square_half_side: float):
  """Temporarily renders with another version's sizes (benchmark only)."""
  old = dict(shapes_scene.SIZE_RADIUS), shapes_render._SQUARE_HALF_SIDE  # pylint: disable=protected-access
  shapes_scene.SIZE_RADIUS.update(size_radius)
  shapes_render._SQUARE_HALF_SIDE = square_half_side  # pylint: disable=protected-access
  try:
    yield
  finally:
    shapes_scene.SIZE_RADIUS.update(old[0])
    shapes_render._SQUARE_HALF_SIDE = old[1]  # pylint: disable=protected-access


def shape_separation(radius: float, resolution: int, offsets: int = 32,
                     seed: int = 0) -> dict[tuple[str, str], tuple[int, float]]:
  """Per shape pair: (min differing pixels of 0.5-coverage masks, mean L1 coverage distance)."""
  rng = np.random.default_rng(seed)
  diffs: dict[tuple[str, str], list[tuple[int, float]]] = {}
  for _ in range(offsets):
    centre = np.asarray([resolution / 2.0 + rng.uniform(-0.5, 0.5, 2)], np.float32)
    cover = {s: shapes_render.coverage(s, centre, radius, resolution, wrap=False)[0]
             for s in shapes_scene.SHAPES}
    for a, b in itertools.combinations(shapes_scene.SHAPES, 2):
      diffs.setdefault((a, b), []).append(
          (int(((cover[a] >= 0.5) != (cover[b] >= 0.5)).sum()),
           float(np.abs(cover[a] - cover[b]).sum())))
  return {k: (min(d for d, _ in v), float(np.mean([l1 for _, l1 in v])))
          for k, v in diffs.items()}


def _separation_tables() -> list[str]:
  lines = ["## Shape separation", "",
           "Pixels in which two shapes' 0.5-coverage masks differ, minimum over 32 random "
           "sub-pixel centres, for the closest pair (and the mean L1 distance of the "
           "anti-aliased coverage for that pair). Resolutions: 16 (tiny), 32 (demo, quick "
           "start, quality), 64 (base, SSR), 128 (paper).", "",
           "| resolution | size | 1.0.0 radius px | 1.0.0 min diff px (pair) | 1.0.0 L1 "
           "| 2.0.0 radius px | 2.0.0 min diff px (pair) | 2.0.0 L1 |",
           "|---|---|---|---|---|---|---|---|"]
  for resolution in (16, 32, 64, 128):
    for size in shapes_scene.SIZES:
      row = [str(resolution), size]
      for geometry in (_V1, None):
        context = _geometry(**geometry) if geometry else contextlib.nullcontext()
        with context:
          radius = shapes_scene.SIZE_RADIUS[size] * resolution
          sep = shape_separation(radius, resolution)
        pair = min(sep, key=lambda k: sep[k][0])
        row += [f"{radius:.2f}", f"{sep[pair][0]} ({pair[0]}-{pair[1]})", f"{sep[pair][1]:.1f}"]
      lines.append("| " + " | ".join(row) + " |")
  lines += ["", f"Every pair at {_RESOLUTION.value} px, small objects (min differing pixels):",
            ""]
  header = "| version | " + " | ".join(f"{a}-{b}" for a, b in itertools.combinations(
      shapes_scene.SHAPES, 2)) + " |"
  lines += [header, "|---" * (1 + 6) + "|"]
  for name, geometry in (("1.0.0", _V1), ("2.0.0", None)):
    context = _geometry(**geometry) if geometry else contextlib.nullcontext()
    with context:
      sep = shape_separation(shapes_scene.SIZE_RADIUS["small"] * _RESOLUTION.value,
                             _RESOLUTION.value)
    lines.append(f"| {name} | " + " | ".join(str(v[0]) for v in sep.values()) + " |")
  return lines


def interpolate_keyframes(positions: np.ndarray, interval: int, resolution: int,
                          wrap: bool) -> np.ndarray:
  """Linear interpolation of ``[t, 2]`` positions from every ``interval``-th frame.

  Wrapping motions are interpolated along the shortest step on the torus. Frames after the
  last keyframe are dropped.
  """
  keys = np.arange(0, len(positions), interval)
  key_pos = positions[keys].astype(np.float64)
  if wrap:
    key_pos = motion_lib.unwrap(keys.astype(np.float64), key_pos, resolution)
  times = np.arange(keys[-1] + 1)
  return np.stack([np.interp(times, keys, key_pos[:, d]) for d in range(2)], axis=-1)


def _aliasing_row(motion: str, speed: str, fps: int, interval: int, resolution: int,
                  samples: int, seconds: float) -> list[str]:
  obj = shapes_scene.SceneObject(shape=0, colour=0, size=0,
                                 motion=shapes_scene.MOTIONS.index(motion),
                                 speed=shapes_scene.SPEEDS.index(speed))
  wrap = motion != "bouncing"
  frames = int(round(seconds * fps))
  rng = np.random.default_rng(0)
  steps, key_steps, errors, reads, read_periods = [], [], [], [], []
  for _ in range(samples):
    track = shapes_scene.trajectory(obj, rng, frames, resolution, fps).astype(np.float64)
    steps.append(np.linalg.norm(motion_lib.wrapped_step(np.diff(track, axis=0), resolution),
                                axis=-1).mean())
    keys = track[::interval]
    key_steps.append(np.linalg.norm(motion_lib.wrapped_step(np.diff(keys, axis=0), resolution),
                                    axis=-1).mean())
    interp = interpolate_keyframes(track, interval, resolution, wrap)
    between = np.arange(len(interp)) % interval != 0
    error = motion_lib.wrapped_step(interp - track[:len(interp)], resolution)[between]
    errors.append(np.sqrt((error ** 2).sum(-1).mean()))
    # What the keyframes show, read as a clip at the keyframe rate.
    est = motion_lib.classify(keys, resolution, fps / interval)
    reads.append(f"{est.motion} {est.speed}" if est.motion != "none" else "none (static)")
    if est.motion == "bouncing":
      read_periods.append(est.period_frames * interval / fps)
  if motion == "bouncing":
    period = shapes_scene.bounce_period_frames(speed, fps)
    per_key = period / interval
    aliased = "yes (Nyquist)" if per_key < 2 else ("at Nyquist" if per_key == 2 else "no")
    period_text = f"{period:g} / {per_key:g}"
    seconds_text = (f"{shapes_scene.BOUNCE_PERIOD[speed]:g} / "
                    + (f"{np.median(read_periods):.3g}" if read_periods else "-"))
  else:
    v = shapes_scene.speed_px_per_frame(speed, resolution, fps)
    aliased = "yes (direction)" if interval * v >= resolution / 2 else "no"
    period_text = seconds_text = "-"
  expected = f"{motion} {speed}"
  counts = {r: reads.count(r) for r in set(reads)}
  top = max(counts, key=counts.get)
  read_text = f"{top} ({counts[top] / samples:.0%})"
  return [f"{fps} fps, k={interval}", f"{motion} {speed}", f"{np.mean(steps):.2f}",
          f"{np.mean(key_steps):.2f}", period_text, aliased, f"{np.mean(errors):.2f}",
          seconds_text,
          f"{np.mean([r == expected for r in reads]):.0%}", read_text]


def _aliasing_table() -> list[str]:
  r = _RESOLUTION.value
  small = shapes_scene.SIZE_RADIUS["small"] * r
  lines = ["## Aliasing at the keyframe interval", "",
           f"{r} px, {_SAMPLES.value} random objects per class, clips of {_SECONDS.value:g} s. "
           "step: mean displacement per frame; key step: between consecutive keyframes "
           "(both on the torus, px); period: bounce period in frames / in keyframe intervals "
           "(< 2 aliases); interp RMS: error of linear interpolation between keyframes at the "
           f"other frames (px; a small object's radius is {small:.1f} px); bounce period s: "
           "true / median read from the keyframes; keyframes read right: how often the "
           "detector's motion classifier, given only the keyframes at the keyframe rate, "
           "reads the caption's motion and speed; most common reading.", "",
           "| used rate | motion | step px | key step px | period frames / keys | aliased "
           "| interp RMS px | bounce period s | keyframes read right | most common reading |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for fps, interval in _SETTINGS:
    for motion in shapes_scene.MOTIONS:
      for speed in shapes_scene.SPEEDS:
        row = _aliasing_row(motion, speed, fps, interval, r, _SAMPLES.value, _SECONDS.value)
        lines.append("| " + " | ".join(row) + " |")
  return lines


def main(argv):
  del argv
  lines = ["# shapes_video: shape separation and keyframe aliasing", "",
           "  python -m benchmarks.shapes_aliasing > benchmarks/results/shapes_aliasing.md",
           "", "Machine: " + common.machine_info(), ""]
  lines += _separation_tables() + [""] + _aliasing_table()
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
