"""Fréchet distance between real and generated clips on network features (SPEC §6).

The paper reports FVD with I3D features trained on Kinetics. Those weights are not ours to ship
and know nothing about `shapes_video`, so our default features come from a small 3-D conv net
trained on the dataset's attributes (`feature_net`); the number is called FVD-shapes and is not
comparable with published FVDs. Any other extractor (a callable clips -> features) plugs in.

The distance between Gaussians fitted to two feature sets is
``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``; the symmetric form of the matrix
square root is computed with eigendecompositions (numpy only, stable for PSD covariances).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

FVD_NAME = "FVD-shapes (ours: 3-D conv net trained on shapes_video attributes, not I3D)"

FeatureExtractor = Callable[[np.ndarray], np.ndarray]


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean ``[d]`` and covariance ``[d, d]`` of features ``[n, d]`` (float64)."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2:
    raise ValueError(f"features must be [n, d], got shape {features.shape}")
  if features.shape[0] < 2:
    raise ValueError(f"need at least 2 feature vectors for a covariance, got "
                     f"{features.shape[0]}")
  if not np.isfinite(features).all():
    raise ValueError("features contain NaN or inf")
  return features.mean(0), np.cov(features, rowvar=False).reshape(
      features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet (2-Wasserstein squared) distance between two Gaussians."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0]
  if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 "
                     f"{mu2.shape}, sigma2 {sigma2.shape}")
  root1 = _psd_sqrt(sigma1)
  cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
  trace_cross = np.sqrt(np.clip(cross, 0.0, None)).sum()
  distance = ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_cross
  return float(max(distance, 0.0))


def feature_frechet_distance(features1, features2) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets ``[n, d]`` and ``[m, d]``."""
  return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def frechet_video_distance(real, generated, extractor: FeatureExtractor) -> float:
  """Fréchet distance between the features ``extractor`` gives real and generated clips."""
  features = []
  for name, clips in (("real", real), ("generated", generated)):
    out = np.asarray(extractor(np.asarray(clips)))
    if out.ndim != 2 or out.shape[0] != len(clips):
      raise ValueError(f"the feature extractor must map {len(clips)} {name} clips to "
                       f"[{len(clips)}, d] features, got shape {out.shape}")
    features.append(out)
  if features[0].shape[1] != features[1].shape[1]:
    raise ValueError(f"feature sizes differ: {features[0].shape[1]} vs {features[1].shape[1]}")
  return feature_frechet_distance(*features)
