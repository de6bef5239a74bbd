"""Conditioning videos and masks for conditional generation (SPEC §5).

The conditional model sees 7 channels: the noisy video (3), the conditioning video with its
unknown pixels zeroed (3), and a binary mask that is 1 on known pixels (1). Every builder
returns ``(cond [b t h w 3], mask [b t h w 1])`` in float32, mask in {0, 1}:

- image-to-video: frame 0 is the image and fully known; every later frame is unknown.
- inpainting: the user's video, known everywhere except a spatial region (the same at every
  frame, or given per frame).
- outpainting: the user's video, known only inside a box.
- cinemagraph: the still image repeated over time; frame 0 fully known, later frames known
  everywhere except the region to animate.

`random_task` draws one of these per example for training, and `model_input` assembles the
7-channel input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TASKS = ("image_to_video", "inpainting", "outpainting", "cinemagraph")


def _check_image(image, name="image"):
  if image.ndim != 4 or image.shape[-1] != 3:
    raise ValueError(f"{name} must be [b, h, w, 3], got shape {tuple(image.shape)}")


def _check_video(video, name="video"):
  if video.ndim != 5 or video.shape[-1] != 3:
    raise ValueError(f"{name} must be [b, t, h, w, 3], got shape {tuple(video.shape)}")


def _check_frames(frames):
  if not isinstance(frames, int) or frames < 1:
    raise ValueError(f"frames must be a positive integer, got {frames!r}")


def _region_over_time(region, b: int, t: int, h: int, w: int) -> jax.Array:
  """A region ``[h w]``, ``[b h w]`` or ``[b t h w]`` (True = inside) as bool ``[b t h w]``."""
  region = jnp.asarray(region)
  if region.shape == (h, w):
    region = region[None, None]
  elif region.shape == (b, h, w):
    region = region[:, None]
  elif region.shape != (b, t, h, w):
    raise ValueError(f"region must be [h, w], [b, h, w] or [b, t, h, w] = "
                     f"[{b}, {t}, {h}, {w}], got shape {tuple(region.shape)}")
  return jnp.broadcast_to(region.astype(bool), (b, t, h, w))


def box_region(height: int, width: int, top, left, box_height, box_width) -> jax.Array:
  """Bool ``[h w]`` (or ``[b h w]`` for per-example box arrays), True inside the box."""
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  top, left, box_height, box_width = (jnp.asarray(a)[..., None, None]
                                      for a in (top, left, box_height, box_width))
  return ((rows >= top) & (rows < top + box_height) & (cols >= left)
          & (cols < left + box_width))


def image_to_video(image: jax.Array, frames: int) -> tuple[jax.Array, jax.Array]:
  """Image ``[b h w 3]`` as frame 0 of a ``frames``-long clip; only frame 0 known."""
  _check_image(image)
  _check_frames(frames)
  b, h, w, _ = image.shape
  known = (jnp.arange(frames) == 0).astype(jnp.float32)  # t
  mask = jnp.broadcast_to(known.reshape(1, frames, 1, 1, 1), (b, frames, h, w, 1))
  cond = image.astype(jnp.float32)[:, None] * mask
  return cond, mask


def inpainting(video: jax.Array, region) -> tuple[jax.Array, jax.Array]:
  """``video [b t h w 3]`` known everywhere except ``region`` (True = to fill in)."""
  _check_video(video)
  b, t, h, w, _ = video.shape
  mask = (~_region_over_time(region, b, t, h, w)).astype(jnp.float32)[..., None]
  return video.astype(jnp.float32) * mask, mask


def outpainting(video: jax.Array, region) -> tuple[jax.Array, jax.Array]:
  """``video [b t h w 3]`` known only inside ``region`` (e.g. a `box_region`)."""
  _check_video(video)
  b, t, h, w, _ = video.shape
  mask = _region_over_time(region, b, t, h, w).astype(jnp.float32)[..., None]
  return video.astype(jnp.float32) * mask, mask


def cinemagraph(image: jax.Array, region, frames: int) -> tuple[jax.Array, jax.Array]:
  """Still ``image [b h w 3]`` animated only inside ``region`` (``[h w]`` or ``[b h w]``).

  Frame 0 is fully known, so the animation starts from the image itself; later frames are
  known outside the region, where they must stay the still image.
  """
  _check_image(image)
  _check_frames(frames)
  b, h, w, _ = image.shape
  region = jnp.asarray(region)
  if region.shape not in ((h, w), (b, h, w)):
    raise ValueError(f"cinemagraph region must be [h, w] or [b, h, w] = [{b}, {h}, {w}], got "
                     f"shape {tuple(region.shape)}")
  animate = _region_over_time(region, b, frames, h, w)
  first = (jnp.arange(frames) == 0).reshape(1, frames, 1, 1)
  mask = (first | ~animate).astype(jnp.float32)[..., None]
  cond = jnp.broadcast_to(image.astype(jnp.float32)[:, None], (b, frames, h, w, 3)) * mask
  return cond, mask


def model_input(noisy: jax.Array, cond: jax.Array, mask: jax.Array) -> jax.Array:
  """The conditional model's input ``concat(noisy, cond * mask, mask)``: ``[b t h w 7]``.

  ``cond`` is multiplied by the mask here too, so unknown pixels can never leak in even if a
  caller forgot to blank them.
  """
  if noisy.shape[:-1] != cond.shape[:-1] or mask.shape != noisy.shape[:-1] + (1,):
    raise ValueError(f"noisy {tuple(noisy.shape)}, cond {tuple(cond.shape)} and mask "
                     f"{tuple(mask.shape)} must be [b, t, h, w, c], [b, t, h, w, c'] and "
                     "[b, t, h, w, 1]")
  mask = mask.astype(noisy.dtype)
  return jnp.concatenate([noisy, cond.astype(noisy.dtype) * mask, mask], axis=-1)


def random_task(rng: jax.Array, video: jax.Array, *, tasks=TASKS, min_box: float = 0.25,
                max_box: float = 0.75) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """One task per example, drawn uniformly from ``tasks``, for conditional fine-tuning.

  Regions are random boxes whose sides are ``[min_box, max_box]`` of the frame's. Jittable.

  Args:
    rng: PRNG key.
    video: clean training clips ``[b t h w 3]``.
    tasks: the subset of `TASKS` to draw from.

  Returns:
    ``(target [b t h w 3], cond [b t h w 3], mask [b t h w 1], task [b] int32)``; ``task``
    indexes `TASKS`. The target is ``video`` except for cinemagraph examples, where pixels
    outside the animated box are frozen to frame 0: the model must learn that known pixels
    stay the still image, which a real clip would contradict.
  """
  _check_video(video)
  unknown = sorted(set(tasks) - set(TASKS))
  if unknown or not tasks:
    raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tuple(tasks)}")
  if not 0.0 < min_box <= max_box <= 1.0:
    raise ValueError(f"need 0 < min_box <= max_box <= 1, got {min_box}, {max_box}")
  b, t, h, w, _ = video.shape
  video = video.astype(jnp.float32)
  k_task, k_h, k_w, k_top, k_left = jax.random.split(rng, 5)
  allowed = jnp.asarray([TASKS.index(name) for name in tasks], jnp.int32)
  task = allowed[jax.random.randint(k_task, (b,), 0, len(allowed))]  # b
  box_h = jnp.round(jax.random.uniform(k_h, (b,), minval=min_box, maxval=max_box) * h)
  box_w = jnp.round(jax.random.uniform(k_w, (b,), minval=min_box, maxval=max_box) * w)
  box_h, box_w = jnp.maximum(box_h, 1).astype(jnp.int32), jnp.maximum(box_w, 1).astype(jnp.int32)
  top = jnp.floor(jax.random.uniform(k_top, (b,)) * (h - box_h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left, (b,)) * (w - box_w + 1)).astype(jnp.int32)
  box = box_region(h, w, top, left, box_h, box_w)  # b h w

  first = video[:, 0]
  still = jnp.broadcast_to(first[:, None], video.shape)
  frozen = jnp.where(box[:, None, :, :, None], video, still)  # animate only inside the box
  candidates = [image_to_video(first, t), inpainting(video, box), outpainting(video, box),
                cinemagraph(first, box, t)]
  targets = [video, video, video, frozen]
  pick = lambda xs: jnp.select([(task == i).reshape(-1, *([1] * (xs[0].ndim - 1)))
                                for i in range(len(TASKS))], xs)
  cond = pick([c for c, _ in candidates])
  mask = pick([m for _, m in candidates])
  target = pick(targets)
  return target, cond, mask, task
