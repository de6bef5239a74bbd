"""Metrics on generated `shapes_video` samples against their prompts (SPEC §1, §6).

For each clip the detector's tracks are matched to the caption's objects (the assignment that
agrees on most attributes), then:

* attribute accuracy: colour, shape, size, motion (direction or bouncing) and speed class per
  caption object, plus ``count`` (as many tracked objects as the caption names); a clip is
  all-correct when the count and every attribute of every object are right;
* temporal consistency per caption object: ``presence`` (fraction of frames where the object is
  seen, in any colour), ``colour_stability`` (of those frames, the fraction in its own colour),
  ``shape_stability`` (of the frames in its colour, the fraction showing its majority shape) and
  ``trajectory_rms_px`` (RMS misfit of the caption's motion model -- a straight line for left /
  right / up / down, the |sin| hop for bouncing); ``smooth`` when below 2% of the frame size;
* optionally FVD-shapes (`frechet`) against real clips and the seam ratio (`seams`).

`evaluate_clips` returns everything as a JSON-ready dict; `metrics_to_markdown` renders it.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from stunet.eval import caption_parser
from stunet.eval import colour_presence
from stunet.eval import detector
from stunet.eval import frechet
from stunet.eval import motion as motion_lib
from stunet.eval import seams

ATTRIBUTES = caption_parser.ExpectedObject.ATTRIBUTES
# Trajectory misfit (fraction of the frame size) under which a track counts as smooth.
SMOOTH_FRACTION = 0.02
CONSISTENCY = ("presence", "all_frames_present", "colour_stability", "shape_stability",
               "trajectory_rms_px", "smooth")


def _agreement(track: detector.ObjectTrack | None, expected: caption_parser.ExpectedObject
               ) -> dict[str, bool]:
  if track is None:
    return {a: False for a in ATTRIBUTES}
  seen = {"colour": track.colour, "shape": track.shape, "size": track.size,
          "motion": track.motion.motion, "speed": track.motion.speed}
  return {a: seen[a] == getattr(expected, a) for a in ATTRIBUTES}


def match_objects(tracks: Sequence[detector.ObjectTrack],
                  expected: Sequence[caption_parser.ExpectedObject]
                  ) -> list[detector.ObjectTrack | None]:
  """For each caption object, the distinct track agreeing on most attributes (or None)."""
  candidates = list(range(len(tracks))) + [None] * len(expected)
  best, best_score = None, -1
  for choice in itertools.permutations(candidates, len(expected)):
    used = [c for c in choice if c is not None]
    if len(used) != len(set(used)):
      continue
    score = sum(sum(_agreement(None if c is None else tracks[c], e).values())
                for c, e in zip(choice, expected))
    if score > best_score:
      best, best_score = choice, score
  return [None if c is None else tracks[c] for c in best]


def _torus_distance(a: np.ndarray, b: np.ndarray, resolution: int) -> float:
  return float(np.linalg.norm(motion_lib.wrapped_step(a - b, resolution)))


def consistency(track: detector.ObjectTrack | None, expected: caption_parser.ExpectedObject,
                detection: detector.ClipDetection, others: Sequence[str],
                resolution: int) -> dict:
  """Temporal consistency of one caption object (see the module docstring).

  Args:
    track: the matched track, or None.
    expected: the caption object.
    detection: the clip's detection (its per-frame objects find the object in another colour).
    others: colours of the other matched tracks (their objects are not this one).
    resolution: frame size.
  """
  frames = len(detection.frames)
  if track is None:
    return {"presence": 0.0, "all_frames_present": False, "colour_stability": float("nan"),
            "shape_stability": float("nan"), "trajectory_rms_px": float("nan"),
            "smooth": False}
  present = np.flatnonzero(track.present)
  radius = max(o.radius for f in detection.frames for o in f if o.colour == track.colour)
  speed = np.linalg.norm(track.motion.velocity)
  speed = 0.0 if not np.isfinite(speed) else speed
  recoloured = 0
  for f in np.flatnonzero(~track.present):
    # The object in another colour: a blob near where the track was last seen.
    near = present[np.argmin(np.abs(present - f))]
    reach = 2.0 * radius + speed * abs(f - near)
    recoloured += any(
        o.colour != track.colour and o.colour not in others
        and _torus_distance(np.asarray(o.centroid), track.centroids[near], resolution) <= reach
        for o in detection.frames[f])
  seen = len(present) + recoloured
  rms = (track.motion.bounce_rms if expected.motion == "bouncing"
         else track.motion.linear_rms)
  return {
      "presence": seen / frames,
      "all_frames_present": seen == frames,
      "colour_stability": len(present) / seen,
      "shape_stability": track.shape_stability,
      "trajectory_rms_px": float(rms),
      "smooth": bool(np.isfinite(rms) and rms <= SMOOTH_FRACTION * resolution),
  }


def score_clip(detection: detector.ClipDetection, prompt: str, resolution: int) -> dict:
  """Per-object attribute agreement and consistency of one clip against its prompt."""
  expected = caption_parser.parse_caption(prompt)
  matched = match_objects(detection.objects, expected)
  objects = []
  for track, exp in zip(matched, expected):
    others = [t.colour for t in matched if t is not None and t is not track]
    objects.append({
        "expected": exp.as_dict(),
        "detected": None if track is None else track.to_dict(),
        "correct": _agreement(track, exp),
        "consistency": consistency(track, exp, detection, others, resolution),
    })
  count_correct = len(detection.objects) == len(expected)
  return {
      "prompt": prompt,
      "detected": detection.detected,
      "reason": detection.reason,
      "num_tracked": len(detection.objects),
      "count_correct": count_correct,
      "all_correct": count_correct and all(all(o["correct"].values()) for o in objects),
      "objects": objects,
  }


def _mean(values) -> float:
  values = [float(v) for v in values if np.isfinite(float(v))]
  return float(np.mean(values)) if values else float("nan")


def evaluate_clips(clips, prompts: Sequence[str], fps: float, *,
                   real_clips=None,
                   feature_extractor: Callable[[np.ndarray], np.ndarray] | None = None,
                   seam_boundaries: Sequence[int] | None = None) -> dict:
  """All sample metrics for generated clips and the prompts they were sampled from.

  Args:
    clips: uint8 ``[n t h w 3]`` generated clips.
    prompts: ``n`` `shapes_video` captions.
    fps: the clips' frame rate (speed classes are defined in real time).
    real_clips: optional uint8 ``[m t h w 3]`` real clips for FVD-shapes.
    feature_extractor: clips -> ``[n, d]`` features for FVD-shapes (e.g.
      `feature_net.FeatureNet.extract` of a trained network, or any user callable); required
      with ``real_clips``.
    seam_boundaries: optional frame-pair indices of temporal-window seams; adds the seam ratio
      of `seams.boundary_vs_interior_diff` over the clips.

  Returns:
    A JSON-ready dict: ``accuracy`` per attribute (and ``count``), ``all_correct``,
    ``consistency`` means, ``detected_fraction``, optional ``fvd_shapes`` and ``seam_ratio``,
    and ``per_clip`` records.
  """
  clips = np.asarray(clips)
  if clips.ndim != 5 or clips.dtype != np.uint8 or clips.shape[-1] != 3:
    raise ValueError(f"clips must be uint8 [n, t, h, w, 3], got {clips.dtype} {clips.shape}")
  prompts = list(prompts)
  if len(prompts) != len(clips):
    raise ValueError(f"got {len(clips)} clips but {len(prompts)} prompts")
  if real_clips is not None and feature_extractor is None:
    raise ValueError("real_clips needs a feature_extractor for FVD-shapes (e.g. the "
                     "`extract` of `feature_net.load_or_train(...)`)")
  resolution = clips.shape[2]
  per_clip = [score_clip(detector.detect(clip, fps), prompt, resolution)
              for clip, prompt in zip(clips, prompts)]
  objects = [o for c in per_clip for o in c["objects"]]
  accuracy = {a: _mean([o["correct"][a] for o in objects]) for a in ATTRIBUTES}
  accuracy["count"] = _mean([c["count_correct"] for c in per_clip])
  result = {
      "num_clips": len(per_clip),
      "num_objects": len(objects),
      "fps": float(fps),
      "detected_fraction": _mean([c["detected"] for c in per_clip]),
      "accuracy": accuracy,
      "all_correct": _mean([c["all_correct"] for c in per_clip]),
      "consistency": {k: _mean([o["consistency"][k] for o in objects]) for k in CONSISTENCY},
      # Lenient: the caption's colours on screen per frame, whatever the shape.
      "colour_presence": colour_presence.evaluate(clips, prompts),
  }
  if real_clips is not None:
    result["fvd_shapes"] = frechet.frechet_video_distance(real_clips, clips, feature_extractor)
    result["fvd_name"] = frechet.FVD_NAME
  if seam_boundaries is not None:
    result["seam_ratio"] = seams.boundary_vs_interior_diff(clips, seam_boundaries)
  result["per_clip"] = per_clip
  return result


def _format(value) -> str:
  if isinstance(value, float):
    return "nan" if not np.isfinite(value) else f"{value:.3f}"
  return str(value)


def metrics_to_markdown(metrics: dict) -> str:
  """A Markdown table of the summary numbers of `evaluate_clips` (per-clip records omitted)."""
  rows = [("clips", metrics["num_clips"]), ("caption objects", metrics["num_objects"]),
          ("clips with a detection", metrics["detected_fraction"])]
  rows += [(f"accuracy: {k}", v) for k, v in metrics["accuracy"].items()]
  rows.append(("all-correct captions", metrics["all_correct"]))
  rows += [(f"consistency: {k}", v) for k, v in metrics["consistency"].items()]
  rows += [(f"colour presence (lenient): {k}", v)
           for k, v in metrics.get("colour_presence", {}).items()]
  if "fvd_shapes" in metrics:
    rows.append((metrics["fvd_name"], metrics["fvd_shapes"]))
  if "seam_ratio" in metrics:
    rows.append(("seam ratio (boundary / interior frame difference)", metrics["seam_ratio"]))
  lines = ["| metric | value |", "|---|---|"]
  lines += [f"| {name} | {_format(value)} |" for name, value in rows]
  return "\n".join(lines) + "\n"
