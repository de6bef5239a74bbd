"""Base -> SSR cascade: spatial super-resolution with temporal MultiDiffusion (SPEC §4).

The SSR model (stage `ssr`) was trained on windows of ``T'`` frames. `SSRSampler` upsamples a
``T``-frame base clip: the conditioning (`stunet.conditioning.ssr.condition` at the fixed level
``stage.ssr.sample_noise_aug``) covers the whole clip, and the clip is denoised on overlapping
windows (``stage.ssr.window_overlap`` / ``window_stride``) merged by averaging at every step
(`stunet.diffusion.multidiffusion.sample`), or, as the seam baseline, with every window
sampled on its own (``merge='independent'``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stunet.conditioning import ssr
from stunet.diffusion import multidiffusion
from stunet.train import build as build_lib
from stunet.train import denoiser as denoiser_lib
from stunet.train import samples as samples_lib

MERGES = multidiffusion.MERGES


def window_layout(config, frames: int) -> multidiffusion.WindowLayout:
  """The sampling windows of an SSR run's config for a clip of ``frames`` frames."""
  s = config.stage.ssr
  window = min(int(s.window_frames), frames)
  if s.window_stride:
    return multidiffusion.window_layout(frames, window, stride=min(int(s.window_stride), window))
  return multidiffusion.window_layout(frames, window, overlap=min(int(s.window_overlap),
                                                                  window - 1))


class SSRSampler(samples_lib.MeshSampler):
  """Jitted `(params, prompts, low, key) -> high-resolution clips` for an `ssr` stage setup."""

  def __init__(self, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, *,
               steps: int | None = None, sampler: str | None = None,
               guidance: float | None = None, merge: str = "average"):
    if setup.stage.name != "ssr":
      raise ValueError(f"SSRSampler needs the 'ssr' stage, got {setup.stage.name!r}")
    if merge not in MERGES:
      raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    super().__init__(setup, mesh)
    self.merge = merge
    c = setup.config
    self.low_resolution = int(c.stage.ssr.low_resolution)
    self.resolution = int(c.stage.ssr.resolution)
    rules = setup.rules
    denoiser = denoiser_lib.Denoiser(setup)

    def run(params, ids, mask, low, key, with_callback):
      with nn.logical_axis_rules(rules):
        text = denoiser.encode(params["text"], ids, mask)
        aug_key, sample_key = jax.random.split(key)
        cond = ssr.condition(aug_key, low, self.resolution, c.stage.ssr.sample_noise_aug,
                             c.diffusion)
        # The windows carry their own slice of `cond` (multidiffusion), so none is bound here.
        denoise = denoiser.fn(params["unet"])
        frames = low.shape[1]
        shape = (low.shape[0], frames, self.resolution, self.resolution, 3)
        fn = multidiffusion.sample if merge == "average" else multidiffusion.sample_independent
        return fn(sample_key, denoise, shape, text.emb, text.mask, text.null_emb, text.null_mask,
                  layout=window_layout(c, frames), config=c.diffusion, cond=cond, steps=steps,
                  sampler=sampler, guidance=guidance,
                  callback=self._on_step if with_callback else None)

    self._run = jax.jit(run, static_argnums=5)

  def __call__(self, params: Any, prompts: Sequence[str], low: np.ndarray, key: jax.Array,
               callback: Callable[[int], None] | None = None) -> np.ndarray:
    """Upsamples ``low [n T h w 3]`` in [-1, 1] (one prompt per clip) to ``[n T H W 3]``."""
    low = np.asarray(low, np.float32)
    if low.ndim != 5 or low.shape[2:] != (self.low_resolution, self.low_resolution, 3):
      raise ValueError(f"the SSR model upsamples {self.low_resolution}x{self.low_resolution} "
                       f"clips [n, T, h, w, 3], got shape {low.shape}")
    if len(prompts) != low.shape[0]:
      raise ValueError(f"{len(prompts)} prompts for {low.shape[0]} clips")
    n = len(prompts)
    ids, mask = self._tokens(prompts)
    low = samples_lib.pad_batch(low, n, self.padded_size(n))
    return self._run_on_mesh(callback, self._run, params, ids, mask, jnp.asarray(low), key,
                             callback is not None)[:n]
