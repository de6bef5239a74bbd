"""Temporal MultiDiffusion: sampling a long clip with a model trained on short windows (SPEC §4).

Lumiere's SSR model sees windows of ``T'`` frames. To upsample a ``T``-frame clip, the clip is
split into overlapping windows; at **every** denoising step each window is denoised and every
frame is set to the average over the windows that cover it. That average is the closed-form
minimiser of MultiDiffusion's least-squares objective (Bar-Tal et al. 2023, eq. 5 with uniform
weights): ``argmin_J sum_i ||F_i(J) - Psi(J_i)||^2`` where ``F_i`` crops window ``i``.

We average the model **prediction** (v, eps or x0) and let the ordinary sampler
(``stunet.diffusion.samplers``) take one step on the whole clip. This equals averaging the
per-window updated latents ``Psi(J_i)``: a DDIM or DDPM step is affine in the prediction with
coefficients that depend only on the noise level, the current ``x_t`` is shared by every window
covering a frame, and so is the step noise (drawn once for the whole clip); an affine map with
shared inputs commutes with an average whose weights sum to one. A test checks this against an
explicit per-window-update reference. Classifier-free guidance is linear in the predictions,
so it commutes with the average as well. The one deliberate difference is thresholding
(static/dynamic), which acts on the averaged ``x0`` of the whole clip, so one dynamic-threshold
scale serves all windows rather than one per window (**choice**: per-window scales would
themselves differ across a boundary and create seams).

"Independent windows" (`sample_independent`) samples every window on its own and stitches the
results, each frame taken from the window whose centre is nearest: the baseline whose seams
MultiDiffusion removes (the paper's Fig. 14).

SSR conditioning: a low-resolution clip upsampled to the output size (``cond [b T h w c']``) is
cut into the same windows and concatenated on channels to each window's noisy frames, so the
wrapped denoiser receives ``[b*n, T', h, w, c + c']``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import samplers

MERGES = ("average", "independent")


@dataclasses.dataclass(frozen=True)
class WindowLayout:
  """Which frames of a ``frames``-long clip each window of ``window`` frames covers.

  Attributes:
    frames: clip length ``T``.
    window: window length ``T'``.
    starts: first frame of each window, increasing; the last window ends at ``T``.
  """

  frames: int
  window: int
  starts: tuple[int, ...]

  @property
  def num_windows(self) -> int:
    return len(self.starts)

  @property
  def counts(self) -> np.ndarray:
    """``[T]`` int: how many windows cover each frame (the averaging denominator)."""
    counts = np.zeros(self.frames, np.int32)
    for s in self.starts:
      counts[s:s + self.window] += 1
    return counts

  @property
  def owners(self) -> np.ndarray:
    """``[T]`` int: the window each frame is taken from when windows are not averaged.

    The covering window whose centre is nearest to the frame's centre (ties: the earlier
    window), i.e. every overlap is cut in its middle.
    """
    starts = np.asarray(self.starts)
    centres = starts + self.window / 2.0
    f = np.arange(self.frames)[:, None] + 0.5
    covers = (f >= starts[None]) & (f < starts[None] + self.window)  # T n
    dist = np.where(covers, np.abs(f - centres[None]), np.inf)
    return np.argmin(dist, axis=1).astype(np.int32)

  @property
  def seams(self) -> tuple[int, ...]:
    """Indices ``i`` where frames ``i`` and ``i + 1`` come from different windows in
    `owners` (the frame pairs of `stunet.eval.seams.boundary_vs_interior_diff`)."""
    owners = self.owners
    return tuple(int(i) for i in np.nonzero(owners[1:] != owners[:-1])[0])

  @property
  def edges(self) -> tuple[int, ...]:
    """Indices ``i`` where some window starts at ``i + 1`` or ends at ``i``: every frame pair
    across which the set of covering windows changes."""
    edges = {s - 1 for s in self.starts if s > 0}
    edges |= {s + self.window - 1 for s in self.starts if s + self.window < self.frames}
    return tuple(sorted(edges))


def window_layout(frames: int, window: int, *, overlap: int | None = None,
                  stride: int | None = None) -> WindowLayout:
  """Windows of ``window`` frames every ``stride`` (= ``window - overlap``) frames.

  Windows start at ``0, stride, 2 stride, ...``; when the stride does not divide
  ``frames - window`` one more window is aligned to the end, so every frame is covered and
  no window runs past the clip (the last overlap is then larger than asked).

  Args:
    frames: clip length ``T`` (>= 1).
    window: window length ``T'`` in ``[1, T]``.
    overlap: frames shared by consecutive windows, in ``[0, T' - 1]`` (the paper uses 2).
    stride: alternatively, the step between window starts, in ``[1, T']``.
  """
  if (overlap is None) == (stride is None):
    raise ValueError(f"give exactly one of overlap and stride, got overlap={overlap!r}, "
                     f"stride={stride!r}")
  for name, value in (("frames", frames), ("window", window)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if window > frames:
    raise ValueError(f"window of {window} frames is longer than the clip ({frames} frames); "
                     f"use window <= {frames} (or plain sampling)")
  if overlap is not None:
    if not isinstance(overlap, (int, np.integer)) or not 0 <= overlap < window:
      raise ValueError(f"overlap must be an integer in [0, window - 1] = [0, {window - 1}], "
                       f"got {overlap!r}")
    stride = window - overlap
  if not isinstance(stride, (int, np.integer)) or not 1 <= stride <= window:
    raise ValueError(f"stride must be an integer in [1, window] = [1, {window}] (a larger "
                     f"stride leaves frames uncovered), got {stride!r}")
  starts = list(range(0, frames - window + 1, stride))
  if starts[-1] + window < frames:
    starts.append(frames - window)
  return WindowLayout(int(frames), int(window), tuple(int(s) for s in starts))


def split_windows(x: jax.Array, layout: WindowLayout) -> jax.Array:
  """``[b T ...] -> [n*b T' ...]``, window-major (rows ``k*b .. k*b + b - 1`` are window k)."""
  if x.ndim < 2 or x.shape[1] != layout.frames:
    raise ValueError(f"expected [b, T={layout.frames}, ...], got shape {tuple(x.shape)}")
  windows = jnp.stack([x[:, s:s + layout.window] for s in layout.starts])  # n b T' ...
  return windows.reshape((-1,) + windows.shape[2:])


def merge_windows(y: jax.Array, layout: WindowLayout, merge: str = "average") -> jax.Array:
  """``[n*b T' ...] -> [b T ...]``: per-frame average over covering windows, or each frame
  from its `WindowLayout.owners` window (``merge='independent'``)."""
  if merge not in MERGES:
    raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
  n = layout.num_windows
  if y.ndim < 2 or y.shape[0] % n or y.shape[1] != layout.window:
    raise ValueError(f"expected [n*b, T'={layout.window}, ...] with n={n} windows, got shape "
                     f"{tuple(y.shape)}")
  y = y.reshape((n, y.shape[0] // n) + y.shape[1:])  # n b T' ...
  if merge == "independent":
    owners = layout.owners
    frames = [y[owners[f], :, f - layout.starts[owners[f]]] for f in range(layout.frames)]
    return jnp.stack(frames, axis=1)
  total = jnp.zeros((y.shape[1], layout.frames) + y.shape[3:], y.dtype)
  for k, s in enumerate(layout.starts):
    total = total.at[:, s:s + layout.window].add(y[k])
  counts = jnp.asarray(layout.counts, y.dtype).reshape((1, -1) + (1,) * (y.ndim - 3))
  return total / counts


def repeat_to_batch(a: jax.Array, batch: int, name: str) -> jax.Array:
  """Repeat per-example conditioning ``[b ...]`` to a batch of ``k*b`` rows, each row ``k``
  times in a row: the order of `guidance.interleave` (an example's conditional and null-text
  rows are adjacent)."""
  if batch % a.shape[0]:
    raise ValueError(f"{name} has batch {a.shape[0]}, which does not divide the model batch "
                     f"{batch}")
  return jnp.repeat(a, batch // a.shape[0], axis=0)


def windowed_denoise_fn(denoise_fn: guidance_lib.DenoiseFn, layout: WindowLayout, *,
                        cond: jax.Array | None = None) -> guidance_lib.DenoiseFn:
  """A denoiser on whole clips that runs ``denoise_fn`` on every window and averages.

  All windows go through ``denoise_fn`` in one call, stacked along the batch. The result for
  each frame is the mean of the predictions of the windows covering it.

  Args:
    denoise_fn: ``(x [n*b T' h w c(+c')], noise_cond, text_emb, text_mask) -> prediction
      [n*b T' h w c]``, the window model.
    layout: the windows (`window_layout`).
    cond: optional conditioning clip ``[b T h w c']`` (SSR: the upsampled low-resolution
      video); each window's frames of it are concatenated on channels to the window's noisy
      frames. Its batch may divide the sampler's (guidance doubles the batch).
  """
  if cond is not None and (cond.ndim != 5 or cond.shape[1] != layout.frames):
    raise ValueError(f"cond must be [b, T={layout.frames}, h, w, c], got shape "
                     f"{tuple(cond.shape)}")

  def denoise(x, noise_cond, text_emb, text_mask):  # x: b T h w c
    if x.shape[1] != layout.frames:
      raise ValueError(f"the clip has {x.shape[1]} frames but the window layout was built for "
                       f"{layout.frames}")
    n = layout.num_windows
    inputs = x
    if cond is not None:
      if cond.shape[2:4] != x.shape[2:4]:
        raise ValueError(f"cond frames are {cond.shape[2]}x{cond.shape[3]} but the sample's are "
                         f"{x.shape[2]}x{x.shape[3]}; upsample the conditioning first")
      inputs = jnp.concatenate([x, repeat_to_batch(cond, x.shape[0], "cond").astype(x.dtype)], -1)
    prediction = denoise_fn(split_windows(inputs, layout),  # n*b T' h w c
                            jnp.tile(noise_cond, (n,)),
                            jnp.tile(text_emb, (n, 1, 1)),
                            jnp.tile(text_mask, (n, 1)))
    return merge_windows(prediction, layout, "average")

  return denoise


def sample(key: jax.Array, denoise_fn: guidance_lib.DenoiseFn, shape: tuple[int, ...],
           text_emb: jax.Array, text_mask: jax.Array, null_emb: jax.Array,
           null_mask: jax.Array, *, layout: WindowLayout, config,
           cond: jax.Array | None = None, **sampler_kwargs) -> jax.Array:
  """Temporal MultiDiffusion sampling of clips ``shape = [b T h w c]``.

  Same contract as `stunet.diffusion.samplers.sample` (keyword options ``steps``, ``sampler``,
  ``eta``, ``guidance``, ``thresholding``, ``callback``, ``x_init``, ``t_start`` pass through),
  with the window model ``denoise_fn`` wrapped by `windowed_denoise_fn`. With one window
  covering the whole clip it is exactly plain sampling.
  """
  shape = tuple(shape)
  if len(shape) != 5 or shape[1] != layout.frames:
    raise ValueError(f"shape must be [b, T={layout.frames}, h, w, c], got {shape}")
  wrapped = windowed_denoise_fn(denoise_fn, layout, cond=cond)
  return samplers.sample(key, wrapped, shape, text_emb, text_mask, null_emb, null_mask,
                         config=config, **sampler_kwargs)


def sample_independent(key: jax.Array, denoise_fn: guidance_lib.DenoiseFn,
                       shape: tuple[int, ...], text_emb: jax.Array, text_mask: jax.Array,
                       null_emb: jax.Array, null_mask: jax.Array, *, layout: WindowLayout,
                       config, cond: jax.Array | None = None,
                       **sampler_kwargs) -> jax.Array:
  """Baseline without MultiDiffusion: every window sampled on its own, then stitched.

  The windows are sampled together as one batch ``[n*b T' h w c]`` (each with its own noise,
  never sharing frames), and each output frame is taken from its `WindowLayout.owners`
  window. Same arguments as `sample`; ``x_init`` (if given) is a whole clip ``[b T h w c]``.
  """
  shape = tuple(shape)
  if len(shape) != 5 or shape[1] != layout.frames:
    raise ValueError(f"shape must be [b, T={layout.frames}, h, w, c], got {shape}")
  n = layout.num_windows
  window_shape = (n * shape[0], layout.window) + shape[2:]
  if sampler_kwargs.get("x_init") is not None:
    sampler_kwargs["x_init"] = split_windows(sampler_kwargs["x_init"], layout)
  window_fn: Callable = denoise_fn
  if cond is not None:
    window_cond = split_windows(cond, layout)  # n*b T' h w c'

    def window_fn(x, noise_cond, text_emb, text_mask):
      c = repeat_to_batch(window_cond, x.shape[0], "cond").astype(x.dtype)
      return denoise_fn(jnp.concatenate([x, c], -1), noise_cond, text_emb, text_mask)

  null_emb_b = jnp.tile(jnp.broadcast_to(null_emb, text_emb.shape), (n, 1, 1))
  null_mask_b = jnp.tile(jnp.broadcast_to(null_mask, text_mask.shape), (n, 1))
  windows = samplers.sample(key, window_fn, window_shape, jnp.tile(text_emb, (n, 1, 1)),
                            jnp.tile(text_mask, (n, 1)), null_emb_b, null_mask_b,
                            config=config, **sampler_kwargs)
  return merge_windows(windows, layout, "independent")
