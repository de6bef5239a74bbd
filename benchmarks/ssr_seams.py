r"""Seams of windowed SSR (the paper's Fig. 14 effect) and seconds per sample of the cascade.

1. Trains (or resumes) a small SSR stage on the demo data: 16 -> 32 px on windows of 8 frames
   (the demo dataset stores 32 px clips; a 32 -> 64 px SSR would first need the 64 px dataset
   built). `--train_steps` sets the budget.
2. Upsamples degraded validation clips of 16 frames (16 px, made from the 32 px ground truth
   exactly as in training) with windows of 8 frames overlapping by 2 (starts 0, 6, 8), once with
   temporal MultiDiffusion and once with independent windows, same seed. Reports the mean
   frame-to-frame difference across the window seams over the mean inside windows
   (`stunet.eval.seams.boundary_vs_interior_diff`; ~1 = no seam), also for the ground truth and
   the bilinear upsampling of the input.
3. Seconds per sample of the demo-size models at the demo config's `sample_steps`: the base video
   model (16 x 32 x 32) and a 32 -> 64 px SSR with the same windows. Speed does not depend on
   the weights, so these use random weights.

  nice -n 10 python -m benchmarks.ssr_seams --workdir=/tmp/ssr_bench --train_steps=300 \
      --out=benchmarks/results/ssr_seams.md
  python -m benchmarks.ssr_seams --model=quickstart --workdir=/tmp/ssr_qs --train_steps=1500 \
      --clips=32 --notiming
"""

import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/ssr_bench", "Run directory of the SSR stage.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data", "TFDS data dir (demo shapes_video).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "SSR training steps.")
_BATCH = flags.DEFINE_integer("batch", 8, "SSR training batch.")
_CLIPS = flags.DEFINE_integer("clips", 8, "Validation clips upsampled for the seam metric.")
_STEPS = flags.DEFINE_integer("steps", 0, "Denoising steps (0: the demo config's).")
_SEAMS = flags.DEFINE_bool("seams", True, "Train the SSR and measure the seams.")
_TIMING = flags.DEFINE_bool("timing", True, "Time base and base + SSR per sample.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed calls after the compiling one (min kept).")
_OUT = flags.DEFINE_string("out", None, "Markdown file for the results (default: print).")
_MODEL = flags.DEFINE_enum("model", "demo", ["demo", "quickstart"], "Experiment config whose "
                           "model and text encoder the seam SSR uses (quickstart: 16 channels, "
                           "cheap enough to train for thousands of steps on a CPU).")


def _ssr_config(data_dir, resolution, low_resolution, train_steps=1, batch=8, model="demo"):
  import importlib
  c = importlib.import_module(f"experiments.configs.{model}").get_config()
  c.stages = "ssr"
  c.model.temporal_conv_impl = "matmul"  # the faster temporal convs on CPU
  c.data.data_dir = data_dir
  c.data.fps = 16  # the stored clips' rate, as the validation clips are read
  c.mesh.shape = (1, 1, 1)
  c.log.update(dict(num_samples=0, tensorboard=False, progress_bar=False, every_steps=25))
  c.ckpt.every_steps = 100
  c.optim.update(dict(num_steps=train_steps, warmup_steps=min(20, train_steps),
                      learning_rate=1e-3))
  c.data.global_batch_size = batch
  c.stage.ssr.update(dict(builder_config="demo", resolution=resolution,
                          low_resolution=low_resolution, window_frames=8, window_overlap=2))
  return c


def _random_params(setup, seed=0, scale=0.05):
  import flax.linen as nn
  abstract = nn.unbox(jax.eval_shape(setup.init_params, jax.random.key(0)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype),
                      abstract)


def _timed(fn, repeats):
  fn()  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
  from stunet.sampling import cascade
  from stunet.sampling import trained_stage
  from stunet.conditioning import ssr
  from stunet.data import pipeline
  from stunet.eval import seams
  from stunet.parallel import mesh as mesh_lib
  from stunet.train import build
  from stunet.train import loop
  from stunet.train import samples
  from stunet.train import stages

  mesh = mesh_lib.make_mesh(_ssr_config(_DATA_DIR.value, 32, 16).mesh, jax.devices()[:1])
  lines = [f"Machine: {common.machine_info()}; load average at start {os.getloadavg()[0]:.1f} (shared "
           "machine: other jobs ran alongside, so times are upper bounds)", ""]

  if _SEAMS.value:
    # 1. Train the 16 -> 32 px SSR.
    config = _ssr_config(_DATA_DIR.value, 32, 16, _TRAIN_STEPS.value, _BATCH.value,
                         _MODEL.value)
    start = time.perf_counter()
    result = loop.train(config, _WORKDIR.value, mesh=mesh)[-1]
    train_s = time.perf_counter() - start
    if result.preempted:
      raise SystemExit(f"training stopped at step {result.step} (SIGTERM); rerun to resume")
    metrics = [l for l in open(os.path.join(_WORKDIR.value, "ssr", "metrics.jsonl"))]
    print(f"trained to step {result.step} in {train_s:.0f} s", flush=True)

    # 2. Seams on validation clips.
    setup, params, step, _ = trained_stage.load_stage(_WORKDIR.value, "ssr", None, "ema", mesh)
    c = setup.config
    steps = _STEPS.value or c.diffusion.sample_steps
    data = _validation_data(c, _CLIPS.value)
    batch = next(pipeline.make_train_iterator(data, mesh=None, tokenizer=None))
    truth = batch["video"].astype(np.float32) / 127.5 - 1.0  # k 16 32 32 3
    captions = [str(x) for x in batch["caption"]]
    low = np.asarray(ssr.degrade(jnp.asarray(truth), 16))
    layout = cascade.window_layout(c, truth.shape[1])
    rows = []
    per_clip = {}  # merge -> each clip's own ratio, for the paired comparison below
    key = jax.random.key(0)
    for merge in ("average", "independent"):
      runner = cascade.SSRSampler(setup, mesh, steps=steps, merge=merge)
      out = np.asarray(runner(params, captions, low, key))
      name = "temporal MultiDiffusion" if merge == "average" else "independent windows"
      rows.append((f"SSR, {name}", seams.boundary_vs_interior_diff(out, layout.seams)))
      per_clip[merge] = np.array([seams.boundary_vs_interior_diff(clip, layout.seams)
                                  for clip in out])
    rows.append(("ground truth (32 px)", seams.boundary_vs_interior_diff(truth, layout.seams)))
    rows.append(("bilinear upsampling of the input",
                 seams.boundary_vs_interior_diff(np.asarray(ssr.resize(jnp.asarray(low), 32)),
                                                 layout.seams)))
    lines += [
        f"## Seams: SSR 16 -> 32 px ({_MODEL.value} model, {c.model.channels} channels), "
        f"{step} training steps (batch {_BATCH.value}, "
        f"{train_s / 60:.1f} min here incl. compile), {steps} DDIM steps",
        "",
        f"{len(captions)} validation clips of {truth.shape[1]} frames, windows of "
        f"{layout.window} frames starting at {list(layout.starts)}; seam frame pairs "
        f"{list(layout.seams)}. Ratio = mean |frame difference| across seams / elsewhere.",
        "", "| upsampling | seam / interior frame difference |", "| --- | --- |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in rows]
    # Same clips, noise and captions for both merges: the per-clip difference isolates the
    # merge from the clips' own motion, which dominates the ratios above at this clip count.
    paired = per_clip["independent"] - per_clip["average"]
    lines += ["", f"Paired per clip (same clip, seed and caption): independent windows' ratio "
              f"above MultiDiffusion's in {int((paired > 0).sum())} of {len(paired)} clips, "
              f"mean difference {paired.mean():+.3f}"
              + (f" (standard error {paired.std(ddof=1) / np.sqrt(len(paired)):.3f})."
                 if len(paired) > 1 else ".")]
    lines += ["", f"Last training loss: {metrics[-1].strip()}", ""]

  # 3. Seconds per sample at demo size.
  if _TIMING.value:
    from experiments.configs import demo
    base_config = demo.get_config()
    base_config.mesh.shape = (1, 1, 1)
    base_config.model.temporal_conv_impl = "matmul"
    base = build.build_stage(base_config, stages.get_stage("video"))
    base_params = _random_params(base)
    base_runner = samples.Sampler(base, mesh)
    prompt = ["a red circle moving quickly to the left"]
    base_s = _timed(lambda: base_runner(base_params, prompt, jax.random.key(1)),
                    _REPEATS.value)
    big = build.build_stage(_ssr_config(_DATA_DIR.value, 64, 32), stages.get_stage("ssr"))
    big_params = _random_params(big)
    big_runner = cascade.SSRSampler(big, mesh)
    clip = np.zeros((1, base.config.data.frames, 32, 32, 3), np.float32)
    ssr_s = _timed(lambda: big_runner(big_params, prompt, clip, jax.random.key(2)),
                   _REPEATS.value)
    lines += [
        f"## Seconds per sample (demo config, {base.config.diffusion.sample_steps} steps, "
        f"guidance {base.config.diffusion.guidance})", "",
        "| model | s / sample |", "| --- | --- |",
        f"| base video model, {base.config.data.frames} x 32 x 32 | {base_s:.1f} |",
        f"| SSR 32 -> 64 px, windows of 8 frames (overlap 2) | {ssr_s:.1f} |",
        f"| base + SSR | {base_s + ssr_s:.1f} |", ""]

  text = "\n".join(lines)
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      f.write(text)
  print(text)


def _validation_data(c, clips):
  """The validation split at the SSR's full clip length (16 frames), unshuffled."""
  import ml_collections
  data = ml_collections.ConfigDict(c.data.to_dict())
  data.split = "validation"
  data.shuffle = False
  data.frames = 16
  data.global_batch_size = clips
  return data


if __name__ == "__main__":
  app.run(main)
