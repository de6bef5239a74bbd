"""Keyframes + temporal super-resolution: the cascade design Lumiere argues against (SPEC §1).

Imagen Video and Video LDM first generate distant keyframes, then fill the frames between them
with a temporal super-resolution (TSR) model. Motion faster than the keyframe rate (a quick
object, a bounce between two keyframes) is aliased in the keyframes and cannot be recovered by
the TSR model; Lumiere's STUNet generates every frame at once instead. This module builds the
cascade from our own parts, so the two designs can be compared at the same training budget
(`stunet.eval.ablation`, variant kind ``keyframes_tsr``):

- the keyframe model: the ordinary ``t2i`` -> ``video`` stages on clips of ``T / k`` frames at
  ``fps / k`` (`keyframe_config`: every k-th frame of the same clips, the temporal factors
  reduced where ``T / k`` is not divisible by them);
- the TSR model: stage ``tsr`` (`stunet.train.stages`), a STUNet inflated from the same T2I
  weights with 4 zero-initialised input channels, trained on full ``T``-frame clips conditioned
  on the keyframes (`keyframe_condition`: every k-th frame kept, the others zeroed, plus a
  keyframe mask channel -- the layout of `stunet.conditioning.masks.model_input`);
- sampling (`fill_between_keyframes`): the ``T / k`` generated keyframes are placed at frames
  ``0, k, 2k, ...``, the TSR model samples the whole clip conditioned on them, and the
  keyframes are pasted back so they are exact. `stunet.sampling.sample_run` runs it with
  ``TSROptions`` (``experiments/sample.py --tsr_workdir``).

The last keyframe is frame ``T - k``: the ``k - 1`` frames after it are extrapolated, exactly
as the keyframe model's clips were sampled (the first of every k frames).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stunet.conditioning import conditional_sampling
from stunet.nn.config import UNetConfig

COND_CHANNELS = 4  # keyframes in place (3) + keyframe mask (1)
INTERVAL_FIELD = "stage.tsr.keyframe_interval"


def check_interval_value(interval: Any, field: str = INTERVAL_FIELD) -> int:
  """``k`` as an int; ValueError naming `field` unless it is an integer >= 2."""
  if not isinstance(interval, int) or isinstance(interval, bool) or interval < 2:
    raise ValueError(f"{field} must be an integer >= 2 (every k-th frame is a keyframe; "
                     f"k = 1 leaves nothing to fill in), got {interval!r}")
  return interval


def check_interval(interval: Any, frames: Any, field: str = INTERVAL_FIELD) -> int:
  """The keyframe interval ``k`` as an int; ValueError naming `field` unless it fits ``frames``.

  ``k`` must be an integer >= 2 (1 would leave no frame to fill) that divides ``frames``
  (the keyframes are frames ``0, k, ..., T - k`` of a ``T``-frame clip).
  """
  check_interval_value(interval, field)
  if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
    raise ValueError(f"data.frames must be set to a positive integer for the keyframe "
                     f"cascade (T, the full clip length), got {frames!r}")
  if frames % interval:
    raise ValueError(f"{field}={interval} must divide data.frames={frames} (the keyframes are "
                     f"frames 0, k, ..., T - k of the full clip); choose k among "
                     f"{[d for d in range(2, frames + 1) if frames % d == 0]}")
  return interval


def keyframe_mask(frames: int, interval: int) -> np.ndarray:
  """float32 ``[frames]``: 1 on the keyframes ``0, k, 2k, ...``, 0 elsewhere."""
  interval = check_interval(interval, frames)
  return (np.arange(frames) % interval == 0).astype(np.float32)


def keyframe_condition(video: jax.Array, interval: int) -> tuple[jax.Array, jax.Array]:
  """``(cond [b t h w 3], mask [b t h w 1])`` of full clips ``video [b t h w 3]``.

  ``cond`` is ``video`` on the keyframes and 0 on every other frame; ``mask`` is 1 exactly on
  the keyframes. Jittable (``interval`` and the shape are static).
  """
  if video.ndim != 5 or video.shape[-1] != 3:
    raise ValueError(f"video must be [b, t, h, w, 3], got shape {tuple(video.shape)}")
  b, t, h, w, _ = video.shape
  known = jnp.asarray(keyframe_mask(t, interval)).reshape(1, t, 1, 1, 1)
  mask = jnp.broadcast_to(known, (b, t, h, w, 1))
  return video.astype(jnp.float32) * mask, mask


def place_keyframes(keyframes: np.ndarray, interval: int) -> tuple[np.ndarray, np.ndarray]:
  """Generated ``keyframes [b n h w 3]`` at frames ``0, k, ..., (n - 1) k`` of ``n k`` frames.

  Returns ``(cond [b n*k h w 3], mask [b n*k h w 1])`` as `keyframe_condition` lays them out.
  """
  keyframes = np.asarray(keyframes, np.float32)
  if keyframes.ndim != 5 or keyframes.shape[-1] != 3:
    raise ValueError(f"keyframes must be [b, n, h, w, 3], got shape {keyframes.shape}")
  b, n, h, w, _ = keyframes.shape
  frames = n * check_interval(interval, n * interval)
  cond = np.zeros((b, frames, h, w, 3), np.float32)
  cond[:, ::interval] = keyframes
  mask = np.broadcast_to(keyframe_mask(frames, interval).reshape(1, frames, 1, 1, 1),
                         (b, frames, h, w, 1)).copy()
  return cond, mask


def model_channels(cond: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """The TSR model's conditioning channels ``concat(cond * mask, mask)`` (4 channels)."""
  return np.concatenate([cond * mask, mask], axis=-1).astype(np.float32)


def reduce_temporal_factors(factors: Sequence[int], frames: int) -> tuple[int, ...]:
  """``factors`` with those that do not divide what is left of ``frames`` set to 1.

  Greedy from the finest down-sampler: each factor is kept when the frames reaching it are
  divisible by it, so a keyframe clip of ``T / k`` frames keeps as much temporal compression
  as it allows.
  """
  out, left = [], int(frames)
  for f in factors:
    if left % f == 0:
      out.append(int(f))
      left //= f
    else:
      out.append(1)
  return tuple(out)


def keyframe_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The keyframe model's config: `config` on every k-th frame (``k`` = `INTERVAL_FIELD`).

  ``data.frames = T / k`` and ``data.fps = fps / k`` (the same clips sampled with a k times
  longer stride), ``model.temporal_factors`` reduced so they divide ``T / k``
  (`reduce_temporal_factors`) and ``sample.fps`` divided by k (written keyframe clips play in
  real time). Everything else, the stages included, is `config`'s.
  """
  frames = config.data.frames
  interval = check_interval(config.stage.tsr.keyframe_interval, frames)
  fps = config.data.fps
  if not isinstance(fps, int) or fps < 1:
    raise ValueError(f"data.fps must be set for the keyframe cascade (the keyframe model "
                     f"trains at data.fps / {INTERVAL_FIELD}), got {fps!r}")
  if fps % interval:
    raise ValueError(f"{INTERVAL_FIELD}={interval} must divide data.fps={fps} (the keyframe "
                     f"model samples the clips at fps / k)")
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.frames = frames // interval
  c.data.fps = fps // interval
  c.model.temporal_factors = reduce_temporal_factors(tuple(config.model.temporal_factors),
                                                     frames // interval)
  c.sample.fps = max(1, int(config.sample.fps) // interval)
  UNetConfig.from_config(c.model).check_input(c.data.frames, int(c.data.resolution),
                                              int(c.data.resolution))
  return c


def fill_between_keyframes(sampler: Callable[..., np.ndarray], params: Any,
                           prompts: Sequence[str], keyframes: np.ndarray, key: jax.Array,
                           interval: int, *, callback: Callable[[int], None] | None = None,
                           paste_keyframes: bool = True) -> np.ndarray:
  """Full clips ``[b n*k h w 3]`` from keyframes ``[b n h w 3]`` (one prompt per clip).

  Args:
    sampler: the TSR stage's `stunet.train.samples.Sampler` (``(params, prompts, key,
      callback, cond=...) -> pixels``; its ``setup.example_shape`` is the clip it makes).
    params: the TSR model's params (``{'unet', 'text'}``).
    prompts: one caption per clip.
    keyframes: generated keyframes in [-1, 1].
    key: PRNG key of the TSR sampling.
    interval: ``k``, the TSR run's `INTERVAL_FIELD`.
    callback: runs after every denoising step.
    paste_keyframes: replace the keyframes of the output by the given ones (exact keyframes;
      off: the TSR model's own reconstruction of them).
  """
  if len(prompts) != len(keyframes):
    raise ValueError(f"{len(prompts)} prompts for {len(keyframes)} keyframe clips")
  cond, mask = place_keyframes(keyframes, interval)
  makes = tuple(sampler.setup.example_shape)
  if cond.shape[1:] != makes:
    raise ValueError(f"the TSR model makes clips of shape {makes}, the keyframes need "
                     f"{cond.shape[1:]} ({keyframes.shape[1]} keyframes x k = {interval}); the "
                     f"keyframe and TSR runs must agree on frames and resolution")
  pixels = sampler(params, list(prompts), key, callback, cond=model_channels(cond, mask))
  if paste_keyframes:
    pixels = np.asarray(conditional_sampling.composite_known(pixels, cond, mask))
  return pixels
