"""AdamW with warmup + cosine decay and global-norm clipping; frozen leaves get nothing.

Video-stage training keeps the T2I weights (spatial U-Net and text encoder) frozen (SPEC §2).
Frozen leaves are routed to `optax.set_to_zero` through `optax.multi_transform`, so Adam keeps
no moments for them (no memory) and their update is exactly zero. The train step also stops
their gradients, so XLA does not compute weight gradients it would throw away.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

TRAIN = "train"
FROZEN = "frozen"


def learning_rate_schedule(optim_config, num_steps: int, peak_lr: float) -> optax.Schedule:
  """Linear warmup to `peak_lr`, then cosine decay to `end_lr_fraction * peak_lr`.

  Indexed by the number of updates already applied; update `k` (from 0) uses the schedule at
  `k + 1`, so the first update is not a wasted zero-learning-rate step.
  """
  warmup = min(optim_config.warmup_steps, num_steps)
  decay = optim_config.decay_steps or num_steps
  base = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr, warmup_steps=warmup,
      decay_steps=max(decay, warmup + 1), end_value=optim_config.end_lr_fraction * peak_lr)
  return lambda count: base(count + 1)


def _decay_mask(params: Any) -> Any:
  # Weight decay on matrices and kernels only: decaying norm scales and biases pulls them
  # towards 0 rather than towards their identity values.
  def is_matrix(x):
    value = x.value if isinstance(x, nn.meta.AxisMetadata) else x
    return len(value.shape) > 1
  return jax.tree.map(is_matrix, params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def make_optimizer(optim_config, labels: Any, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
  """The optimiser over a params tree whose `labels` (same tree) are TRAIN / FROZEN.

  `labels` may stop at the leaves of a boxed (`nn.Partitioned`) tree: optax treats a label as
  a prefix of the box, so the same optimiser initialises boxed and plain params alike.
  """
  adamw = optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                      weight_decay=optim_config.weight_decay, mask=_decay_mask)
  train_tx = (optax.chain(optax.clip_by_global_norm(optim_config.grad_clip), adamw)
              if optim_config.grad_clip > 0 else adamw)
  return optax.multi_transform({TRAIN: train_tx, FROZEN: optax.set_to_zero()}, labels)
