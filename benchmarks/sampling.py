r"""Sampling speed: seconds per clip for the base model and for SSR with MultiDiffusion.

Random weights (the cost does not depend on them), random text embeddings of the config's
width, classifier-free guidance on (the batch doubles, as in real sampling). Each sampler is
jitted once over all its steps (`stunet.diffusion.samplers.sample` runs a `fori_loop`), compiled
ahead, and timed; seconds per clip at the config's `diffusion.sample_steps` are the measured
seconds per step times those steps.

- base: the STUNet of `--base_config` on `--base_size` clips (`samplers.sample`).
- SSR: a denoiser with `model.cond_channels` = 3 (the upsampled low-resolution clip joins the
  noisy frames on channels, SPEC §4) over a `--ssr_size` clip cut into windows of
  `--ssr_window` frames overlapping by `--ssr_overlap`, sampled with temporal MultiDiffusion
  (`multidiffusion.sample`: every window denoised, frames averaged, every step) and as
  independent windows (`multidiffusion.sample_independent`), timed interleaved A/B. Both run
  the same windows through the model; the ratio is MultiDiffusion's overhead.

  python -m benchmarks.sampling
  python -m benchmarks.sampling --quick
"""

from __future__ import annotations

import os
import statistics
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import train_setup
from stunet.diffusion import guidance as guidance_lib
from stunet.diffusion import multidiffusion
from stunet.diffusion import samplers
from stunet.nn import summary
from stunet.nn.config import UNetConfig
from stunet.nn.stunet import STUNet

_BASE_CONFIG = flags.DEFINE_string("base_config", "base", "Config of the base model.")
_BASE_SIZE = flags.DEFINE_string("base_size", "16x32x32", "TxHxW of base-model clips.")
_SSR_CONFIG = flags.DEFINE_string("ssr_config", "demo",
                                  "Config whose widths the SSR denoiser uses.")
_SSR_SIZE = flags.DEFINE_string("ssr_size", "32x32x32", "TxHxW of the upsampled clip.")
_SSR_WINDOW = flags.DEFINE_integer("ssr_window", 16, "SSR window length T'.")
_SSR_OVERLAP = flags.DEFINE_integer("ssr_overlap", 2, "Frames shared by adjacent windows.")
_STEPS = flags.DEFINE_integer("steps", 2, "Denoising steps per timed sampler call.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per sampler (median).")
_DTYPE = flags.DEFINE_string("dtype", "float32", "model.dtype ('' = the config's).")
_QUICK = flags.DEFINE_bool("quick", False, "Two-level tiny model, 4x8x8 / 8x8x8 clips, one step: "
                           "a smoke run.")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/results/sampling.md",
                              "Markdown results ('' = print only).")


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


def main(argv):
  del argv
  quick = _QUICK.value
  base_name, ssr_name = ("tiny", "tiny") if quick else (_BASE_CONFIG.value, _SSR_CONFIG.value)
  overrides = train_setup.QUICK_MODEL if quick else None
  base_size = (4, 8, 8) if quick else parse_size(_BASE_SIZE.value)
  ssr_size = (8, 8, 8) if quick else parse_size(_SSR_SIZE.value)
  window, overlap = (4, 1) if quick else (_SSR_WINDOW.value, _SSR_OVERLAP.value)
  steps, repeats = (1, 2) if quick else (_STEPS.value, _REPEATS.value)
  machine = common.machine_info()
  print(f"machine: {machine}", flush=True)
  rows = []

  # Base model: one clip, guidance on.
  t, h, w = base_size
  base = Denoiser(base_name, t, h, _DTYPE.value, model_overrides=overrides)
  diffusion = base.config.diffusion
  emb, mask, null_emb, null_mask = base.text(1)

  def base_sample(params, key):
    return samplers.sample(key, base.fn(params), (1, t, h, w, 3), emb, mask, null_emb,
                           null_mask, config=diffusion, steps=steps)

  key = jax.random.key(0)
  compiled, compile_s = compile_sampler(base_sample, base.params, key)
  base_times = time_calls(compiled, (base.params, key), repeats)
  per_step = statistics.median(base_times) / steps
  rows.append([f"base ({base_name} widths)", f"{t}x{h}x{w}", "1 (whole clip)",
               f"{compile_s:.0f}", f"{per_step:.3f}", diffusion.sample_steps,
               f"{per_step * diffusion.sample_steps:.1f}", "-"])
  print(rows[-1], flush=True)
  del compiled

  # SSR: the same windows with and without MultiDiffusion averaging, interleaved.
  t, h, w = ssr_size
  layout = multidiffusion.window_layout(t, window, overlap=overlap)
  ssr = Denoiser(ssr_name, window, h, _DTYPE.value, cond_channels=3, model_overrides=overrides)
  ssr_diffusion = ssr.config.diffusion
  emb, mask, null_emb, null_mask = ssr.text(1)
  cond = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (1, t, h, w, 3)), jnp.float32)

  def ssr_sample(sample_fn):
    def run(params, key):
      return sample_fn(key, ssr.fn(params), (1, t, h, w, 3), emb, mask, null_emb, null_mask,
                       layout=layout, config=ssr_diffusion, cond=cond, steps=steps)
    return run

  variants = {"MultiDiffusion": multidiffusion.sample,
              "independent windows": multidiffusion.sample_independent}
  compiled = {}
  compile_times = {}
  for name, fn in variants.items():
    compiled[name], compile_times[name] = compile_sampler(ssr_sample(fn), ssr.params, key)
  times = {name: [] for name in variants}
  for _ in range(repeats):  # A/B interleaved
    for name in variants:
      times[name] += time_calls(compiled[name], (ssr.params, key), 1)
  ratio = statistics.median(times["MultiDiffusion"]) / statistics.median(
      times["independent windows"])
  for name in variants:
    per_step = statistics.median(times[name]) / steps
    rows.append([f"SSR {name} ({ssr_name} widths, cond_channels 3)", f"{t}x{h}x{w}",
                 f"{layout.num_windows} x {window} frames, overlap {overlap}",
                 f"{compile_times[name]:.0f}", f"{per_step:.3f}", ssr_diffusion.sample_steps,
                 f"{per_step * ssr_diffusion.sample_steps:.1f}",
                 f"{ratio:.3f}" if name == "MultiDiffusion" else "1"])
    print(rows[-1], flush=True)

  command = (f"python -m benchmarks.sampling --quick={quick} --base_config={base_name} "
             f"--base_size={'x'.join(map(str, base_size))} --ssr_config={ssr_name} "
             f"--ssr_size={'x'.join(map(str, ssr_size))} --ssr_window={window} "
             f"--ssr_overlap={overlap} --steps={steps} --repeats={repeats} "
             f"--dtype={_DTYPE.value}")
  report = "\n".join([
      "# Sampling speed", "", f"Command: `{command}`", "", f"Machine: {machine}", "",
      common.NOISY_MACHINE_NOTE, "",
      f"Random weights and text, classifier-free guidance on (batch 2 per clip), DDIM. Each "
      f"sampler call runs {steps} steps; seconds per clip = seconds per step x the config's "
      "diffusion.sample_steps. The SSR rows sample the same windows; MultiDiffusion "
      "additionally averages overlapping frames at every step (overhead = ratio, A/B "
      "interleaved).", "",
      common.markdown_table(
          ["model", "clip TxHxW", "windows", "compile s", "s / step", "steps",
           "s / clip", "time vs independent windows"], rows), ""])
  print(report)
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
    with open(_OUTPUT.value, "w", encoding="utf-8") as f:
      f.write(report)


if __name__ == "__main__":
  app.run(main)
