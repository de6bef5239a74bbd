"""Conditioning hooks of the training stages: extra input channels built from the batch.

A stage with a conditioning hook trains a model whose input is ``concat(x_t, cond)``
(``model.cond_channels = cond.shape[-1]``). The hook is made once per stage from the
stage-resolved config and runs inside the jitted train step:

    make_condition(config) -> condition(rng, x0) -> (target, cond)

- ``x0``: the clean batch in [-1, 1] (``[b t h w 3]`` or ``[b h w 3]``), as the data pipeline
  delivered it; ``rng`` is a key of the step (``fold_in(key(seed), step)``-derived).
- ``target``: the clean signal the diffusion loss is taken against (usually ``x0``; it may
  differ, e.g. cinemagraph examples freeze the pixels outside the animated region).
- ``cond``: ``[b ... c']``, concatenated on channels to the noisy ``target`` at every model
  call of the loss; the loss and the rest of the step are unchanged.

Everything here is jittable. The hooks of this module:

- `masked_tasks` (stage ``conditional``, SPEC §5): a random task per example from
  `stunet.conditioning.masks.random_task`; ``cond = concat(cond_video * mask, mask)`` (4 channels),
  the layout `stunet.conditioning.masks.model_input` gives at sampling.
- `ssr_from_high_res` (stage ``ssr``, SPEC §4): the batch is the high-resolution clip; the
  low-resolution one is made from it on device and turned into `stunet.conditioning.ssr.condition`
  channels with a random noise-augmentation level per example.

- `keyframes_in_place` (stage ``tsr``, SPEC §1): temporal super-resolution; ``cond`` = every
  ``stage.tsr.keyframe_interval``-th frame of the clip in place, zeros elsewhere, plus the
  keyframe mask (`stunet.conditioning.keyframes_tsr.keyframe_condition`); the target is the
  full clip.

A new conditioning is one more ``make_condition`` function and a `stunet.train.stages.Stage`
with ``cond_channels`` and ``conditioning`` set.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from stunet.conditioning import keyframes_tsr
from stunet.conditioning import masks
from stunet.conditioning import ssr

ConditionFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def masked_tasks(config: ml_collections.ConfigDict) -> ConditionFn:
  """Random image-to-video / inpainting / outpainting / cinemagraph tasks per example."""
  s = config.stage.conditional
  tasks, min_box, max_box = tuple(s.tasks), float(s.min_box), float(s.max_box)

  def condition(rng, x0):
    target, cond, mask, _ = masks.random_task(rng, x0, tasks=tasks, min_box=min_box,
                                              max_box=max_box)
    return target, jnp.concatenate([cond * mask, mask], axis=-1)

  return condition


def ssr_from_high_res(config: ml_collections.ConfigDict) -> ConditionFn:
  """The SSR conditioning of a high-resolution training clip (module doc)."""
  s = config.stage.ssr
  low, aug_min, aug_max = int(s.low_resolution), float(s.noise_aug_min), float(s.noise_aug_max)
  diffusion = config.diffusion

  def condition(rng, x0):
    aug_rng, noise_rng = jax.random.split(rng)
    t_aug = jax.random.uniform(aug_rng, (x0.shape[0],), minval=aug_min, maxval=aug_max)
    cond = ssr.condition(noise_rng, ssr.degrade(x0, low), x0.shape[2], t_aug, diffusion)
    return x0, cond

  return condition


def keyframes_in_place(config: ml_collections.ConfigDict) -> ConditionFn:
  """The TSR conditioning: the clip's keyframes in place and the keyframe mask (module doc)."""
  interval = int(config.stage.tsr.keyframe_interval)

  def condition(rng, x0):
    del rng  # the keyframes of a clip are fixed: no randomness
    cond, mask = keyframes_tsr.keyframe_condition(x0, interval)
    return x0, jnp.concatenate([cond * mask, mask], axis=-1)

  return condition
