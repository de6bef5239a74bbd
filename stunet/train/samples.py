"""Periodic samples during training: the diffusion sampler on the EMA weights (SPEC §3).

`workdir/<stage>/samples/<step>/` gets a PNG grid (one row per prompt, one column per frame)
and, for videos, one file per prompt: MP4 through PyAV when it can encode H.264, else an
animated GIF through pillow. `prompts.txt` lists the prompts in row order.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from stunet.conditioning import sdedit
from stunet.data import video_write
from stunet.diffusion import samplers
from stunet.data import contact_sheet
from stunet.train import build as build_lib
from stunet.train import denoiser as denoiser_lib


class MeshSampler:
  """What a stage's samplers share: batches padded to a multiple of the mesh's data axes (the
  model constrains activations' batch dim to them), a per-call `callback(step)` that the
  jitted denoising loop reports to, and the output gathered to the host."""

  def __init__(self, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh):
    self.setup = setup
    self.mesh = mesh
    axes = tuple(a for a in setup.config.data.batch_axes if a in mesh.axis_names)
    self.multiple = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    self._callback: Callable[[int], None] | None = None

  def padded_size(self, n: int) -> int:
    return n + (-n % self.multiple)

  def _tokens(self, prompts: Sequence[str]) -> tuple[jax.Array, jax.Array]:
    """`(ids, mask)` of `prompts` padded to `padded_size` by repeating the last one."""
    size = self.padded_size(len(prompts))
    ids, mask = self.setup.tokenizer(list(prompts) + [prompts[-1]] * (size - len(prompts)))
    return jnp.asarray(ids), jnp.asarray(mask)

  def _on_step(self, step, x) -> None:
    """The jitted loop's host callback: this call's `callback`, if it has one."""
    del x
    if self._callback is not None:
      self._callback(int(step))

  def _run_on_mesh(self, callback: Callable[[int], None] | None, run: Callable[..., jax.Array],
                   *args) -> np.ndarray:
    """`run(*args)` on the mesh, `callback` reporting each step; the whole output on the host
    (on a multi-host mesh every process takes part and gets all of it)."""
    self._callback = callback
    try:
      with jax.set_mesh(self.mesh):
        out = jax.block_until_ready(run(*args))
    finally:
      self._callback = None
    if not out.is_fully_addressable:
      out = multihost_utils.process_allgather(out, tiled=True)
    return np.asarray(jax.device_get(out))


class Sampler(MeshSampler):
  """Jitted `(params, prompts, key) -> pixels` for one stage on one mesh.

  `steps`, `sampler` and `guidance` default to `config.diffusion`; the training loop uses the
  defaults and `experiments/sample.py` chooses them per run. Conditioned models get their
  conditioning channels per call (`cond`), and SDEdit starts from given clips (`x_init`).
  The batch is padded to a multiple of the mesh's data axes (the model constrains
  activations' batch dim to them). A `callback` given to `__call__` runs after every
  denoising step (e.g. a progress bar).
  """

  def __init__(self, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, *,
               steps: int | None = None, sampler: str | None = None,
               guidance: float | None = None):
    super().__init__(setup, mesh)
    c = setup.config
    rules = setup.rules
    denoiser = denoiser_lib.Denoiser(setup)

    def run(params, ids, mask, key, cond, x_init, with_callback, strength):
      with nn.logical_axis_rules(rules):
        text = denoiser.encode(params["text"], ids, mask)
        denoise = denoiser.fn(params["unet"], cond)
        kwargs = dict(config=c.diffusion, steps=steps, sampler=sampler, guidance=guidance,
                      callback=self._on_step if with_callback else None)
        if x_init is not None:
          return sdedit.sdedit(key, denoise, x_init, strength, text.emb, text.mask,
                               text.null_emb, text.null_mask, **kwargs)
        shape = (ids.shape[0],) + setup.example_shape
        return samplers.sample(key, denoise, shape, text.emb, text.mask, text.null_emb,
                               text.null_mask, **kwargs)

    # Without a callback no host round trip per step is compiled in.
    self._run = jax.jit(run, static_argnums=(6, 7))

  def __call__(self, params: Any, prompts: Sequence[str], key: jax.Array,
               callback: Callable[[int], None] | None = None, *,
               cond: np.ndarray | None = None, x_init: np.ndarray | None = None,
               strength: float = 1.0) -> np.ndarray:
    """Pixels `[n ...]` in [-1, 1]; `callback(step)` runs after each denoising step.

    Args:
      cond: conditioning channels `[n ... c']` (or `[1 ...]` for all) concatenated to the
        noisy input at every step, for stages with `model.cond_channels = c'`.
      x_init: with `strength`: SDEdit (`stunet.conditioning.sdedit`) of these clips `[n ...]` (or
        `[1 ...]`) in [-1, 1] instead of sampling from noise.
    """
    n = len(prompts)
    size = self.padded_size(n)
    ids, mask = self._tokens(prompts)
    want = self.setup.unet_config.cond_channels
    if (cond is None) != (want == 0) or (cond is not None and cond.shape[-1] != want):
      got = "none" if cond is None else cond.shape[-1]
      raise ValueError(f"the {self.setup.stage.name!r} model takes {want} conditioning "
                       f"channels, got {got}")
    cond, x_init = (None if a is None else jnp.asarray(pad_batch(np.asarray(a), n, size))
                    for a in (cond, x_init))
    return self._run_on_mesh(callback, self._run, params, ids, mask, key, cond, x_init,
                             callback is not None, float(strength))[:n]


def pad_batch(a: np.ndarray, n: int, size: int) -> np.ndarray:
  """`[n ...]` or `[1 ...]` -> `[size ...]`, repeating the last row (the samplers' padding of
  per-clip inputs to the mesh's batch multiple)."""
  if a.shape[0] == 1:
    return np.repeat(a, size, axis=0)
  if a.shape[0] != n:
    raise ValueError(f"conditioning has batch {a.shape[0]}; expected 1 or {n}")
  return np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)])


def _write_video(path_stem: str, frames: np.ndarray, fps: int) -> str:
  """frames uint8 `t h w 3` -> `<stem>.mp4` (PyAV) or `<stem>.gif` (pillow); returns the path."""
  try:
    return video_write.write_mp4(path_stem + ".mp4", frames, fps)
  except (ImportError, ValueError) as e:  # no PyAV, or no H.264 encoder in its FFmpeg build
    video_write.warn_gif_fallback(e)
  return video_write.write_gif(path_stem + ".gif", frames, fps)


def write_samples(directory: str, pixels: np.ndarray, prompts: Sequence[str],
                  fps: int) -> list[str]:
  """Writes samples `[n h w 3]` or `[n t h w 3]` in [-1, 1]; returns the written paths."""
  os.makedirs(directory, exist_ok=True)
  video = video_write.to_uint8(pixels)
  if video.ndim == 4:
    video = video[:, None]  # n 1 h w 3
  n, t = video.shape[:2]
  # Rows: prompts, columns: every frame.
  paths = [contact_sheet.write_contact_sheet(os.path.join(directory, "grid.png"), video,
                                             list(range(t)), gap=0)]
  with open(os.path.join(directory, "prompts.txt"), "w") as f:
    f.write("\n".join(prompts) + "\n")
  if t > 1:
    for i in range(n):
      paths.append(_write_video(os.path.join(directory, f"sample_{i:02d}"), video[i], fps))
  return paths
