"""Tolerances for comparing two float32 evaluations, derived from the computation, not a run.

Two float32 evaluations of one function differ by rounding alone when they reduce in another
order: another SIMD width or kernel (Intel vs AMD, AVX2 vs AVX-512), XLA vs PyTorch, a padded
batch vs an unpadded one (another tiling). A sum of K terms, each rounding with relative error
up to eps (float32: 2**-23 = 1.19e-7), then differs between two orders by a random walk of
about eps * sqrt(K) times the size of its terms (the worst case, K * eps, needs every rounding
to go the same way, which random data does not do). Through a network the errors of the
successive reductions add up, so K is the total reduction length along the path from input to
output, and the size of the terms is bounded by the largest output value (the encoders' layer
norms keep every stage near the output's scale). `ULPS` = 4 is the safety factor: four
standard deviations of that random walk. On the tiny T5 encoders of test_t5.py (K = 520,
outputs up to 3.5) that is 3.8e-5, where XLA vs PyTorch differ by 1.1e-6 on an Intel CPU and
padded vs unpadded runs by 1.3e-6 on an AMD one; a wrong formula (another activation, a
padding key that leaks into attention) differs by 1e-3 or more.
"""

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
ULPS = 4


def float32_atol(reference, reduction_length: int, ulps: int = ULPS) -> float:
  """Absolute tolerance for float32 outputs near `reference` (module doc)."""
  scale = float(np.max(np.abs(np.asarray(reference, np.float64))))
  return ulps * EPS32 * math.sqrt(reduction_length) * scale


def encoder_reduction_length(*, layers: int, width: int, heads: int, head_dim: int,
                             mlp: int, length: int) -> int:
  """Total reduction length from token embeddings to the output of a pre-norm encoder.

  Per layer: the norm's mean of squares (width), the q/k/v projections (width), the scores
  (head_dim), the attention average over the keys (length), the output projection
  (heads * head_dim), a second norm (width), the MLP's two matmuls (width, mlp); then the
  final norm (width).
  """
  per_layer = width + width + head_dim + length + heads * head_dim + width + width + mlp
  return layers * per_layer + width
