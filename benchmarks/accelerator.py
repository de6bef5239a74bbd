r"""One accelerator, one run: the `base` model at the paper's clip size, trained and sampled.

Three measurements, each on the default device (one GPU or TPU chip):

1. Train step: the real video-stage step (`benchmarks.train_setup`, as `experiments/train.py`
   builds it: spatial U-Net and text encoder frozen, temporal layers trained with AdamW + EMA)
   of `--config` at `--size` (default `base` at 80x128x128: 5 levels, 80/40/20/10/5 frames),
   bf16 with the config's remat, random state. Step time is the median of `--steps` timed
   steps after one warm-up; peak memory is the allocator's own high-water mark
   (`device.memory_stats()`), beside XLA's estimate (arguments + outputs - aliases +
   temporaries).
2. Sampling: seconds per clip of the full guided sampler (`diffusion.sample_steps` DDIM steps,
   the clip and its null-text twin in one batch), one `fori_loop` compiled once, timed once
   after a warm-up call.
3. Attention kernels: one guided forward pass with `model.attention_impl="xla"` against the
   fused kernel (`"cudnn"` on GPUs): time, XLA's memory estimate and the largest output
   difference (the fused kernel must give the XLA path's function to bf16 rounding).

FLOPs and MFU. A GPU's own cost analysis leaves out cuDNN's custom calls (convolutions and
fused attention), so the FLOPs per step are XLA's count of the same step with XLA attention
lowered for the CPU backend (`counted_flops`); they include remat's recomputed forward
(hardware FLOPs). MFU = FLOPs / step time / the chip's dense bf16 peak
(`common.BF16_PEAK_TFLOPS`, the vendor's number, not a measurement). The XLA-attention step is
also timed: the train-step A/B of the two kernels.

  python -m benchmarks.accelerator          # on a GPU/TPU host; ~5 min on one H200
  python -m benchmarks.accelerator --quick  # tiny two-level model on CPU: a smoke run
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import random_denoiser as sampling_bench
from benchmarks import train_setup
from stunet.diffusion import samplers
from stunet.nn import attention as attention_lib
from stunet.nn.config import UNetConfig
from stunet.train import measure

_CONFIG = flags.DEFINE_string("config", "base", "Experiment config (experiments/configs/).")
_SIZE = flags.DEFINE_string("size", "80x128x128", "Clip TxHxW (H = W).")
_BATCH = flags.DEFINE_integer("batch", 1, "Clips per train step.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed train steps (after one warm-up).")
_DTYPE = flags.DEFINE_string("dtype", "bfloat16", "model.dtype.")
_ATTENTION = flags.DEFINE_enum("attention_impl", "auto", list(attention_lib.ATTENTION_IMPLS),
                               "model.attention_impl of the train step and the sampler.")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 0,
                                     "Denoising steps per clip (0 = diffusion.sample_steps).")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny two-level model at 4x8x8 in float32, 2 "
                           "sampling steps: a CPU smoke run of every code path.")
_COUNT_FLOPS = flags.DEFINE_bool("count_flops", False, "Only print the train step's FLOP "
                                  "count (CPU lowering; used in a subprocess on accelerators).")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/results/accelerator.md",
                              "Markdown file for the results ('' = print only).")


def _device_peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def counted_flops(name: str, frames: int, size: int, batch: int, dtype: str,
                  overrides: dict) -> float:
  """XLA's FLOP count of the train step with XLA attention, lowered for the CPU backend.

  Not the accelerator's own cost analysis: a GPU backend runs convolutions and attention as
  cuDNN custom calls that its cost analysis leaves out (on an H200 it counted 0.85 TFLOP for
  the cuDNN step and 1.48 TFLOP for the XLA-attention step of `base` at 80x128x128, against
  37.5 TFLOP counted here). The lowered (unoptimised) module needs no compile. On another
  backend this runs in a CPU subprocess.
  """
  if jax.default_backend() != "cpu":
    args = [sys.executable, "-m", "benchmarks.accelerator", "--count_flops", f"--config={name}",
            f"--size={frames}x{size}x{size}", f"--batch={batch}", f"--dtype={dtype}",
            f"--quick={_QUICK.value}"]
    proc = subprocess.run(args, env=dict(os.environ, JAX_PLATFORMS="cpu"), check=True,
                          capture_output=True, text=True)
    return float(proc.stdout.strip().splitlines()[-1])
  bench = train_setup.TrainStepSetup(train_setup.benchmark_config(
      name, frames=frames, resolution=size, batch=batch, dtype=dtype, attention_impl="xla",
      **overrides))
  with jax.set_mesh(bench.mesh):
    lowered = bench.step.jitted.lower(bench.abstract_state(), bench.abstract_batch())
  return measure.flops(lowered)


def train_step(name: str, frames: int, size: int, batch: int, dtype: str, impl: str,
               steps: int, overrides: dict) -> dict:
  """Compiles and times the video-stage train step with attention `impl`."""
  config = train_setup.benchmark_config(name, frames=frames, resolution=size, batch=batch,
                                        dtype=dtype, attention_impl=impl, **overrides)
  bench = train_setup.TrainStepSetup(config)
  compiled = bench.compile_abstract()
  abstract = bench.abstract_state()
  counts = measure.param_counts(abstract.params, bench.setup.labels)
  params, trainable = counts["all"], counts["trainable"]
  state = measure.random_like(abstract)
  batch_arrays = bench.make_batch()
  state, times = bench.run_steps(state, batch_arrays, steps + 1)  # the first is a warm-up
  del state, batch_arrays
  return dict(impl=impl, params=params, trainable=trainable, compile_s=bench.compile_seconds,
              step_s=statistics.median(times[1:]),
              xla_memory=measure.memory(compiled).peak_bytes,
              device_peak=_device_peak_bytes(), remat=bool(config.model.remat))


def sample_clip(name: str, frames: int, size: int, dtype: str, impl: str, steps: int,
                overrides: dict) -> dict:
  """Seconds per guided clip: the whole sampler compiled once, one warm-up call, one timed."""
  denoiser = sampling_bench.Denoiser(name, frames, size, dtype,
                                     model_overrides={**overrides, "attention_impl": impl})
  diffusion = denoiser.config.diffusion
  steps = steps or int(diffusion.sample_steps)
  emb, mask, null_emb, null_mask = denoiser.text(1)

  def run(params, key):
    return samplers.sample(key, denoiser.fn(params), (1, frames, size, size, 3), emb, mask,
                           null_emb, null_mask, config=diffusion, steps=steps)

  key = jax.random.key(0)
  compiled, compile_s = sampling_bench.compile_sampler(run, denoiser.params, key)
  jax.block_until_ready(compiled(denoiser.params, key))
  start = time.perf_counter()
  clip = jax.block_until_ready(compiled(denoiser.params, key))
  seconds = time.perf_counter() - start
  if not bool(jnp.all(jnp.isfinite(clip))):
    raise RuntimeError("the sampled clip has non-finite values")
  return dict(steps=steps, compile_s=compile_s, clip_s=seconds,
              guidance=float(diffusion.guidance))


def attention_ab(name: str, frames: int, size: int, dtype: str, overrides: dict,
                 fused: str | None, repeats: int = 3) -> list[dict]:
  """One guided forward pass (batch 2: clip + null twin) with XLA attention and, when given,
  the fused kernel `fused`."""
  rows, outputs = [], {}
  for impl in ["xla"] + ([fused] if fused else []):
    denoiser = sampling_bench.Denoiser(name, frames, size, dtype,
                                       model_overrides={**overrides, "attention_impl": impl})
    emb, mask, null_emb, null_mask = denoiser.text(1)
    text = jnp.concatenate([emb, jnp.broadcast_to(null_emb, emb.shape)])
    text_mask = jnp.concatenate([mask, jnp.broadcast_to(null_mask, mask.shape)])
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, frames, size, size, 3)),
                    jnp.float32)
    noise = jnp.asarray([0.3, 0.3], jnp.float32)
    forward = jax.jit(lambda p, x, n, t, m: denoiser.fn(p)(x, n, t, m))
    args = (denoiser.params, x, noise, text, text_mask)
    compiled = forward.lower(*args).compile()
    outputs[impl] = np.asarray(compiled(*args), np.float32)
    times = sampling_bench.time_calls(compiled, args, repeats)
    rows.append(dict(impl=impl, forward_s=statistics.median(times),
                     xla_memory=measure.memory(compiled).peak_bytes))
  if fused:
    ref = outputs["xla"]
    diff = float(np.max(np.abs(outputs[fused] - ref)))
    rows[-1]["max_diff"] = diff
    rows[-1]["ref_scale"] = float(np.max(np.abs(ref)))
  return rows


def _gib(value: int | None) -> str:
  return "n/a" if value is None else f"{value / 2 ** 30:.2f} GiB"


def main(argv):
  del argv
  quick = _QUICK.value
  name = "tiny" if quick else _CONFIG.value
  frames, size = (4, 8) if quick else sampling_bench.parse_size(_SIZE.value)[:2]
  dtype = "float32" if quick else _DTYPE.value
  overrides = dict(train_setup.QUICK_MODEL) if quick else {}
  steps = 2 if quick else _STEPS.value
  sample_steps = 2 if quick else _SAMPLE_STEPS.value
  if _COUNT_FLOPS.value:
    print(counted_flops(name, frames, size, _BATCH.value, dtype, overrides))
    return
  machine = common.machine_info()
  print(f"machine: {machine}", flush=True)
  peak, peak_source = common.device_peak(
      lambda: common.measure_matmul_peak(512 if quick else 2048))
  impl = _ATTENTION.value
  model = UNetConfig.from_config(train_setup.benchmark_config(
      name, frames=frames, resolution=size, batch=1, dtype=dtype, **overrides).model)
  head_dim = model.level_heads(model.attention_levels.index(True))[1]
  resolved = attention_lib.resolve_implementation(impl, model.compute_dtype, head_dim)

  fused = attention_lib.resolve_implementation("auto", model.compute_dtype, head_dim)
  trains = [train_step(name, frames, size, _BATCH.value, dtype, impl, steps, overrides)]
  print(f"train step: {trains[-1]}", flush=True)
  if resolved != "xla":  # the XLA-attention step: the kernel A/B
    trains.append(train_step(name, frames, size, _BATCH.value, dtype, "xla", steps,
                             overrides))
    print(f"train step: {trains[-1]}", flush=True)
  flops = counted_flops(name, frames, size, _BATCH.value, dtype, overrides)
  sample = sample_clip(name, frames, size, dtype, impl, sample_steps, overrides)
  print(f"sampling: {sample}", flush=True)
  ab = attention_ab(name, frames, size, dtype, overrides, None if fused == "xla" else "auto")
  print(f"attention: {ab}", flush=True)

  clip = f"{frames}x{size}x{size}"
  rows = []
  for i, t in enumerate(trains):
    achieved = flops / t["step_s"] if flops else None
    rows.append([
        name, clip, _BATCH.value, dtype, "on" if t["remat"] else "off",
        f"{t['impl']} ({resolved} at head dim {head_dim})" if i == 0 else t["impl"],
        f"{common.si(t['params'])} ({common.si(t['trainable'])})",
        f"{t['compile_s']:.0f}", f"{t['step_s']:.3f}",
        common.si(flops) if flops else "n/a",
        common.si(achieved, "FLOP/s") if achieved else "n/a",
        f"{100 * achieved / peak:.1f}%" if achieved else "n/a",
        _gib(t["device_peak"]) if i == 0 else "(first row's run only)",
        _gib(t["xla_memory"])])
  train_table = common.markdown_table(
      ["config", "clip", "batch", "dtype", "remat", "attention", "params (trainable)",
       "compile s", "step s (median)", "FLOPs/step (XLA on CPU, XLA attention)",
       "achieved FLOP/s",
       "MFU", "peak memory (allocator)", "peak memory (XLA estimate)"], rows)
  sample_table = common.markdown_table(
      ["config", "clip", "attention", "steps", "guidance", "compile s", "s / clip"],
      [[name, clip, impl, sample["steps"], sample["guidance"], f"{sample['compile_s']:.0f}",
        f"{sample['clip_s']:.2f}"]])
  ab_table = common.markdown_table(
      ["attention_impl", "forward s (batch 2)", "XLA memory estimate", "max abs difference from the XLA output"],
      [[r["impl"], f"{r['forward_s']:.4f}", _gib(r["xla_memory"]),
        f"{r['max_diff']:.3g} (outputs up to {r['ref_scale']:.3g})" if "max_diff" in r
        else "reference"] for r in ab])
  command = (f"python -m benchmarks.accelerator --quick={quick} --config={name} "
             f"--size={clip} --batch={_BATCH.value} --steps={steps} --dtype={dtype} "
             f"--attention_impl={impl} --sample_steps={sample_steps}")
  report = "\n".join([
      "# Accelerator: train step, sampling and attention kernels", "",
      f"Command: `{command}`", "", f"Machine: {machine}", "",
      f"Peak: {common.si(peak, 'FLOP/s')} ({peak_source}).", "",
      "## Train step (video stage)", "", train_table, "",
      "FLOPs/step: XLA's cost analysis of the step with XLA attention, lowered for the CPU "
      "backend (the GPU's own count leaves out cuDNN's convolutions and attention), including "
      "remat's recomputed forward; MFU = FLOPs / step time / peak (derived). Peak memory (allocator): the device's peak_bytes_in_use after "
      "the timed steps (state, batch and the step; measured).", "",
      "## Sampling", "", sample_table, "",
      "Random weights and text, classifier-free guidance on (the clip and its null-text twin "
      "in one batch), DDIM, the whole loop compiled once; one timed call after a warm-up.", "",
      "## Attention kernels: one guided forward pass", "", ab_table, ""])
  print(report)
  common.write_report(report, _OUTPUT.value)


if __name__ == "__main__":
  app.run(main)
