"""Colour presence: are the caption's colours on screen, frame by frame, whatever the shape?

The detector (`detector.py`) only reports an object whose blob has a plausible area and fits a
shape template, so an undertrained model's ragged blobs in the right colour score zero there,
exactly like coloured noise does. This lenient diagnostic separates the two: per frame, a
palette colour is *present* when at least ``min_pixels`` pixels are owned by it
(`detector.pixel_ownership`, coverage >= 0.5), with ``min_pixels`` half the area of the
dataset's smallest object. Per clip it reports

* ``recall``: the fraction of (caption colour, frame) pairs where the colour is present;
* ``spurious``: the fraction of frames showing a colour the caption does not name;
* ``all_frames``: whether every caption colour is present in every frame.

It says nothing about shape, size or motion; the detector's numbers do.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stunet.data import shapes_scene
from stunet.eval import caption_parser
from stunet.eval import detector

_MIN_COVERAGE = 0.5


def min_pixels(resolution: int) -> float:
  """Half the area of the smallest `shapes_video` object at ``resolution``."""
  return 0.5 * min(detector.unit_area(s) for s in shapes_scene.SHAPES) * (
      shapes_scene.SIZE_RADIUS["small"] * resolution) ** 2


def present_colours(clip: np.ndarray) -> np.ndarray:
  """``[t k]`` bool: palette colour k is present in frame t of a uint8 ``[t h w 3]`` clip."""
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3:
    raise ValueError(f"clip must be [t, h, w, 3], got shape {clip.shape}")
  owner, alpha, _ = detector.pixel_ownership(clip)
  k = len(shapes_scene.COLOUR_NAMES)
  counts = np.stack([((owner == c) & (alpha[..., c] >= _MIN_COVERAGE)).sum((1, 2))
                     for c in range(k)], axis=-1)  # t k
  return counts >= min_pixels(clip.shape[1])


def score_clip(clip: np.ndarray, prompt: str) -> dict:
  """``recall``, ``spurious`` and ``all_frames`` of one clip against its caption."""
  wanted = sorted({shapes_scene.COLOUR_NAMES.index(o.colour)
                   for o in caption_parser.parse_caption(prompt)})
  present = present_colours(clip)  # t k
  others = np.ones(present.shape[1], bool)
  others[wanted] = False
  hits = present[:, wanted]
  return {"recall": float(hits.mean()),
          "spurious": float(present[:, others].any(-1).mean()),
          "all_frames": bool(hits.all())}


def evaluate(clips: np.ndarray, prompts: Sequence[str]) -> dict:
  """Means of `score_clip` over uint8 ``[n t h w 3]`` clips and their captions."""
  scores = [score_clip(c, p) for c, p in zip(clips, prompts)]
  return {k: float(np.mean([s[k] for s in scores])) for k in ("recall", "spurious", "all_frames")}
