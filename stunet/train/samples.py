"""Periodic samples during training: the diffusion sampler on the EMA weights (SPEC §3).

`workdir/<stage>/samples/<step>/` gets a PNG grid (one row per prompt, one column per frame)
and, for videos, one file per prompt: MP4 through PyAV when it can encode H.264, else an
animated GIF through pillow. `prompts.txt` lists the prompts in row order.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import samplers
from stunet.train import build as build_lib


def to_uint8(x: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255]."""
  return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


class Sampler:
  """Jitted `(ema_params, prompts, key) -> pixels` for one stage on one mesh."""

  def __init__(self, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh):
    self.setup = setup
    self.mesh = mesh
    axes = tuple(a for a in setup.config.data.batch_axes if a in mesh.axis_names)
    # The model constrains activations' batch dim to the data axes: pad to a multiple.
    self.multiple = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    c = setup.config
    rules = tuple(tuple(r) for r in c.mesh.rules)

    def run(params, ids, mask, key):
      with nn.logical_axis_rules(rules):
        emb = setup.text_module.apply({"params": params["text"]}, ids, mask)
        emb = emb.astype(jnp.float32)
        null_emb, null_mask = guidance_lib.null_text(emb.shape[1], emb.shape[2])

        def denoise(x_t, cond, text_emb, text_mask):
          return setup.model.apply({"params": params["unet"]}, x_t, cond, text_emb, text_mask,
                                   train=False)

        shape = (ids.shape[0],) + setup.example_shape
        return samplers.sample(key, denoise, shape, emb, mask.astype(bool), null_emb,
                               null_mask, config=c.diffusion)

    self._run = jax.jit(run)

  def __call__(self, params: Any, prompts: Sequence[str], key: jax.Array) -> np.ndarray:
    n = len(prompts)
    padded = list(prompts) + [prompts[-1]] * (-n % self.multiple)
    ids, mask = self.setup.tokenizer(padded)
    with jax.set_mesh(self.mesh):
      out = self._run(params, jnp.asarray(ids), jnp.asarray(mask), key)
    return np.asarray(jax.device_get(out))[:n]


def _write_video(path_stem: str, frames: np.ndarray, fps: int) -> str:
  """frames uint8 `t h w 3` -> `<stem>.mp4` (PyAV) or `<stem>.gif` (pillow); returns the path."""
  try:
    import av  # optional dependency (stunet[video])
    path = path_stem + ".mp4"
    with av.open(path, mode="w") as container:
      stream = container.add_stream("libx264", rate=fps)
      stream.width, stream.height = frames.shape[2], frames.shape[1]
      stream.pix_fmt = "yuv420p"
      for frame in frames:
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
      container.mux(stream.encode())
    return path
  except Exception as e:  # no PyAV, or no H.264 encoder in its FFmpeg build
    logging.info("mp4 writing unavailable (%s); writing a GIF", e)
  path = path_stem + ".gif"
  images = [Image.fromarray(f) for f in frames]
  images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps),
                 loop=0)
  return path


def write_samples(directory: str, pixels: np.ndarray, prompts: Sequence[str],
                  fps: int) -> list[str]:
  """Writes samples `[n h w 3]` or `[n t h w 3]` in [-1, 1]; returns the written paths."""
  os.makedirs(directory, exist_ok=True)
  video = to_uint8(pixels)
  if video.ndim == 4:
    video = video[:, None]  # n 1 h w 3
  n, t, h, w, _ = video.shape
  grid = video.transpose(0, 2, 1, 3, 4).reshape(n * h, t * w, 3)  # rows: prompts, cols: frames
  paths = [os.path.join(directory, "grid.png")]
  Image.fromarray(grid).save(paths[0])
  with open(os.path.join(directory, "prompts.txt"), "w") as f:
    f.write("\n".join(prompts) + "\n")
  if t > 1:
    for i in range(n):
      paths.append(_write_video(os.path.join(directory, f"sample_{i:02d}"), video[i], fps))
  return paths
