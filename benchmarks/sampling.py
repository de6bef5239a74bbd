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

import statistics

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import train_setup
from benchmarks.random_denoiser import compile_sampler
from benchmarks.random_denoiser import Denoiser
from benchmarks.random_denoiser import parse_size
from benchmarks.random_denoiser import time_calls
from stunet.diffusion import multidiffusion
from stunet.diffusion import samplers

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
  common.write_report(report, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
