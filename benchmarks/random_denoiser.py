"""A randomly initialised denoiser of an experiment config's widths, and sampler timing.

Shared by the benchmarks that sample (`sampling`, `accelerator`): no flags here, so each
benchmark script keeps its own.
"""

from __future__ import annotations

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_setup
from stunet.diffusion import guidance as guidance_lib
from stunet.nn import summary
from stunet.nn.config import UNetConfig
from stunet.nn.stunet import STUNet


def parse_size(size: str) -> tuple[int, int, int]:
  try:
    t, h, w = (int(v) for v in size.lower().split("x"))
  except ValueError as e:
    raise ValueError(f"size {size!r} must look like TxHxW, e.g. 16x32x32") from e
  return t, h, w


def random_params(model: nn.Module, inputs, seed: int = 0):
  abstract = jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]
  leaves, treedef = jax.tree.flatten(nn.unbox(abstract))
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(treedef, [
      jnp.asarray(0.02 * rng.standard_normal(l.shape, np.float32), l.dtype) for l in leaves])


class Denoiser:
  """A randomly initialised STUNet of config `name`'s widths, with text inputs."""

  def __init__(self, name: str, frames: int, size: int, dtype: str, cond_channels: int = 0,
               model_overrides: dict | None = None):
    config = train_setup.load_config(name)
    config.model.update(model_overrides or {})
    if dtype:
      config.model.dtype = dtype
    config.model.cond_channels = cond_channels
    self.config = config
    self.model_config = UNetConfig.from_config(config.model)
    self.model_config.check_input(frames, size, size)
    self.text_length, self.text_width = int(config.text.max_length), int(config.text.width)
    inputs = summary.abstract_inputs(self.model_config, 1, frames, size, self.text_length,
                                     self.text_width)
    self.model = STUNet(self.model_config)
    self.params = random_params(self.model, inputs)

  def fn(self, params):
    def denoise(x, noise_cond, text_emb, text_mask):
      return self.model.apply({"params": params}, x, noise_cond, text_emb, text_mask)
    return denoise

  def text(self, batch: int):
    rng = np.random.default_rng(1)
    emb = jnp.asarray(rng.standard_normal((batch, self.text_length, self.text_width)),
                      jnp.float32)
    mask = jnp.ones((batch, self.text_length), bool)
    null_emb, null_mask = guidance_lib.null_text(self.text_length, self.text_width)
    return emb, mask, null_emb, null_mask


def compile_sampler(fn, *args):
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def time_calls(compiled, args, repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return times
