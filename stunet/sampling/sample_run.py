"""Text-to-video sampling from a trained run's checkpoint (SPEC §3 samplers, §5 outputs).

`sample_run` restores one stage of a workdir (`workdir/<stage>/checkpoints/<step>`, the latest
by default) with the stage's own `config.json`, so the model built for sampling is the one
that was trained. It generates `num_samples` clips per prompt with the EMA (default) or raw
parameters, sharded over the mesh's batch axes, and writes each clip through
`stunet.eval.gallery.write_sample` (mp4 + GIF, contact sheet, XT slice, JSON of prompt, seed
and settings) plus an `index.html` gallery, by default into `workdir/<stage>/sampled/<step>/`.

Noise depends only on the seed and the batch layout: batch `j` of the run uses
`fold_in(key(seed), j)`, so the same command gives the same pixels on the same mesh.

Beyond text-to-video (`ModeInputs`, SPEC §5):
- `i2v`, `inpaint`, `outpaint`, `cinemagraph` sample the `conditional` stage with the
  conditioning of `stunet.conditioning.masks` built from the user's image / video / mask
  (`stunet.conditioning.inputs`). Mask images are white where pixels are to be generated (the
  inpainted hole, the outpainted surround, the cinemagraph's animated region). By default the
  known pixels are pasted over the output (`conditional_sampling.composite_known`), so the
  given frame / still region is reproduced exactly; `paste_known=False` shows the model's own
  reconstruction.
- `v2v`: SDEdit of a video with the `video` stage at `strength`.
- `StyleOptions`: the video model with its spatial weights blended with a `t2i_style` run's
  (`stunet.conditioning.stylize.interpolate_spatial`).
- `CascadeOptions`: the base clips are upsampled by an `ssr` run with temporal MultiDiffusion
  (`stunet.sampling.cascade`); the written clips are the high-resolution ones.
- `TSROptions`: the keyframes + temporal super-resolution baseline
  (`stunet.conditioning.keyframes_tsr`):
  the `video` stage's clips are keyframes, placed every `stage.tsr.keyframe_interval` frames,
  and a `tsr` run fills the frames between them; the written clips are the full ones.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from stunet.conditioning import conditional_sampling
from stunet.conditioning import inputs as inputs_lib
from stunet.conditioning import keyframes_tsr
from stunet.conditioning import masks
from stunet.data import video_write
from stunet.eval import gallery
from stunet.sampling import cascade as cascade_lib
from stunet.sampling import trained_stage
from stunet.sampling.options import (CONDITIONAL_MODES, MODE_INPUTS, CascadeOptions,
                                     ModeInputs, SampleOptions, SampleResult, StyleOptions,
                                     TSROptions, read_prompts)
from stunet.train import samples as samples_lib
from stunet.train import stages as stages_lib


def _conditioning(inputs: ModeInputs, frames: int, resolution: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(model channels [1 t h w 4], known video [1 t h w 3], mask [1 t h w 1])` of a mode."""
  image = video = region = None
  if inputs.image:
    image = inputs_lib.read_image(inputs.image, resolution)[None]
  if inputs.video:
    video = inputs_lib.read_video(inputs.video, frames, resolution)[None]
  if inputs.mask:
    region = inputs_lib.read_mask(inputs.mask, resolution)
  if inputs.mode == "i2v":
    cond, mask = masks.image_to_video(image, frames)
  elif inputs.mode == "inpaint":
    cond, mask = masks.inpainting(video, region)
  elif inputs.mode == "outpaint":
    if region.all():
      raise ValueError(f"mask {inputs.mask!r} is white everywhere: outpainting needs a known "
                       "(black) region to extend")
    cond, mask = masks.outpainting(video, ~region)
  else:
    cond, mask = masks.cinemagraph(image, region, frames)
  cond, mask = np.asarray(cond), np.asarray(mask)
  return np.concatenate([cond * mask, mask], axis=-1), cond, mask


def sample_run(workdir: str, prompts: Sequence[str], *, stage: str | None = None,
               step: int | None = None, options: SampleOptions = SampleOptions(),
               out_dir: str | None = None,
               config: ml_collections.ConfigDict | None = None,
               mesh: jax.sharding.Mesh | None = None, progress: bool = True,
               on_step: Callable[[int], None] | None = None,
               inputs: ModeInputs = ModeInputs(), style: StyleOptions | None = None,
               cascade: CascadeOptions | None = None,
               tsr: TSROptions | None = None) -> SampleResult:
  """Samples `options.num_samples` clips per prompt from a stage of `workdir` (module doc).

  Args:
    workdir: the training run's directory.
    prompts: non-empty texts (see `read_prompts`); over-long ones are truncated with a warning.
    stage: 'video', 't2i' or 'conditional' (default: 'conditional' for the conditional modes
      of `inputs`, else 'video').
    step: checkpoint step (default: the latest).
    options: sampling settings.
    out_dir: output folder (default `workdir/<stage>/sampled/<step>`).
    config: overrides the stage's `config.json`; its model/text/diffusion/data fields must
      match the checkpoint's (`stunet.train.compat.ConfigMismatchError` otherwise).
    mesh: default: `config.mesh` over all devices.
    progress: show a progress bar over denoising steps.
    on_step: extra `(step)` callback after each denoising step.
    inputs: the mode and its input files (`ModeInputs`).
    style: blend in a style run's spatial weights (video stage).
    cascade: upsample with an SSR run.
    tsr: the clips are keyframes; fill the frames between them with a TSR run (before any
      SSR upsampling).
  """
  options.validate()
  inputs.validate()
  for extra in (style, cascade, tsr):
    if extra is not None:
      extra.validate()
  prompts = read_prompts(prompts)
  stage = _checked_stage(stage, inputs, style, tsr)
  setup, params, step, mesh = trained_stage.load_stage(workdir, stage, step, options.params,
                                                       mesh, config)
  c = setup.config
  if style is not None:
    params, style_step = trained_stage.styled_params(params, style, mesh)
  cond = known = known_mask = x_init = None
  if inputs.mode in CONDITIONAL_MODES:
    cond, known, known_mask = _conditioning(inputs, c.data.frames, c.data.resolution)
  elif inputs.mode == "v2v":
    x_init = inputs_lib.read_video(inputs.video, c.data.frames, c.data.resolution)[None]

  cut = trained_stage.truncated_prompts(setup.tokenizer, prompts)
  for i in cut:
    warnings.warn(f"prompt {i + 1} is longer than text.max_length={c.text.max_length} tokens "
                  f"and is truncated: {prompts[i][:60]!r}...")

  steps = options.steps or c.diffusion.sample_steps
  sampler_name = options.sampler or c.diffusion.sampler
  guidance = c.diffusion.guidance if options.guidance is None else float(options.guidance)
  runner = trained_stage.runner(samples_lib.Sampler, setup, mesh, steps=steps,
                                sampler=sampler_name, guidance=guidance)
  jobs = [(p, k) for p in range(len(prompts)) for k in range(options.num_samples)]
  size = runner.padded_size(options.batch_size or len(jobs))

  def sample_batch(j, batch, callback):
    key = jax.random.fold_in(jax.random.key(options.seed), j)
    return runner(params, [prompts[p] for p, _ in batch], key, callback=callback, cond=cond,
                  x_init=x_init, strength=inputs.strength if x_init is not None else 1.0)

  pixels = _in_batches(sample_batch, jobs, size, steps, "sampling", progress, on_step)
  if known is not None and inputs.paste_known:
    pixels = np.asarray(conditional_sampling.composite_known(pixels, known, known_mask))

  settings = {"stage": stage, "step": step, "params": options.params, "sampler": sampler_name,
              "steps": steps, "guidance": guidance, "eta": c.diffusion.eta,
              "thresholding": c.diffusion.thresholding, "batch_size": size,
              **_mode_settings(inputs)}
  if style is not None:
    settings.update(style_workdir=os.path.abspath(style.workdir), style_alpha=style.alpha,
                    style_step=style_step)
  fps = c.sample.fps
  if tsr is not None:
    pixels, tsr_settings, fps = _fill_frames(tsr, pixels, jobs, prompts, size, options,
                                             guidance, sampler_name, mesh, progress, on_step)
    settings.update(tsr_settings)
  if cascade is not None:
    pixels, ssr_settings = _upsample(cascade, pixels, jobs, prompts, size, options, guidance,
                                     sampler_name, c, mesh, progress, on_step)
    settings.update(ssr_settings)

  out_dir = out_dir or os.path.join(trained_stage.stage_dir(workdir, stage), "sampled", str(step))
  title = f"{os.path.basename(os.path.abspath(workdir))} / {stage} step {step}"
  entries, gallery_path = _write(out_dir, title, pixels, jobs, prompts, size, options.seed,
                                 settings, fps)
  return SampleResult(out_dir=out_dir, step=step, entries=entries, pixels=pixels,
                      gallery_path=gallery_path)


def _checked_stage(stage: str | None, inputs: ModeInputs, style: StyleOptions | None,
                   tsr: TSROptions | None) -> str:
  """The stage to sample (default: the mode's), after checking that it goes with the mode and
  the second runs; every error names the flags to change."""
  stage = stage or inputs.default_stage()
  stages_lib.get_stage(stage)  # unknown stage: ValueError naming the registered ones
  if stage == "ssr":
    raise ValueError("the 'ssr' stage upsamples base samples: pass its workdir as "
                     "--ssr_workdir (CascadeOptions) with the base run's --workdir")
  if stage == "tsr":
    raise ValueError("the 'tsr' stage fills in the frames between keyframes: pass its workdir "
                     "as --tsr_workdir (TSROptions) with the keyframe run's --workdir")
  if inputs.mode in CONDITIONAL_MODES and stage != "conditional":
    raise ValueError(f"--mode={inputs.mode} samples the 'conditional' stage, got "
                     f"--stage={stage}")
  if inputs.mode == "v2v" and stage != "video":
    raise ValueError(f"--mode=v2v edits with the 'video' stage, got --stage={stage}")
  if style is not None and stage != "video":
    raise ValueError(f"a style is blended into the 'video' stage's model, got --stage={stage}")
  if tsr is not None and (stage != "video" or inputs.mode != "t2v"):
    raise ValueError(f"the TSR run fills in text-to-video keyframes of the 'video' stage, got "
                     f"--stage={stage} --mode={inputs.mode}")
  return stage


def _mode_settings(inputs: ModeInputs) -> dict:
  """What a sample's JSON record says about its mode and input files."""
  settings = {"mode": inputs.mode}
  for name in MODE_INPUTS[inputs.mode]:
    settings[name] = os.path.abspath(getattr(inputs, name))
  if inputs.mode == "v2v":
    settings["strength"] = inputs.strength
  if inputs.mode in CONDITIONAL_MODES:
    settings["paste_known"] = inputs.paste_known
  return settings


def _write(out_dir: str, title: str, pixels: np.ndarray, jobs: list, prompts: list[str],
           size: int, seed: int, settings: dict, fps: int
           ) -> tuple[list[gallery.SampleEntry], str]:
  """Every clip (mp4 + GIF, contact sheet, XT slice, JSON record) and the gallery page, from
  process 0: `(entries, gallery path)`."""
  gallery_path = os.path.join(out_dir, "index.html")
  if jax.process_index() != 0:
    return [], gallery_path
  video = video_write.to_uint8(pixels)
  if video.ndim == 4:
    video = video[:, None]  # images: one-frame clips
  entries = []
  for i, (p, k) in enumerate(jobs):
    j = i // size
    entries.append(gallery.write_sample(
        out_dir, f"p{p:03d}_s{k:02d}", video[i], prompt=prompts[p], seed=seed,
        settings={**settings, "batch": j, "index_in_batch": i - j * size}, fps=fps))
  gallery_path = gallery.write_gallery(out_dir, entries, title=title)
  logging.info("wrote %d samples and %s", len(entries), gallery_path)
  return entries, gallery_path


def _fill_frames(tsr: TSROptions, keyframes: np.ndarray, jobs, prompts, size: int,
                 options: SampleOptions, guidance: float, sampler_name: str,
                 mesh: jax.sharding.Mesh, progress: bool,
                 on_step: Callable[[int], None] | None) -> tuple[np.ndarray, dict, int]:
  """`(full clips, settings, fps)`: the TSR run of `tsr` fills in the keyframe clips."""
  setup, params, step, _ = trained_stage.load_stage(tsr.workdir, "tsr", tsr.step, options.params,
                                                    mesh)
  c = setup.config
  interval = int(c.stage.tsr.keyframe_interval)
  if keyframes.ndim != 5:
    raise ValueError("the TSR model fills in videos; sample the 'video' stage")
  want = (int(c.data.frames) // interval, int(c.data.resolution), int(c.data.resolution))
  if keyframes.shape[1:4] != want:
    raise ValueError(f"the TSR run in {tsr.workdir} fills {want[0]} keyframes of "
                     f"{want[1]}x{want[2]} (data.frames={c.data.frames} / "
                     f"stage.tsr.keyframe_interval={interval}), but the keyframe model makes "
                     f"{keyframes.shape[1]} frames of {keyframes.shape[2]}x{keyframes.shape[3]}")
  steps = tsr.steps or c.diffusion.sample_steps
  runner = trained_stage.runner(samples_lib.Sampler, setup, mesh, steps=steps,
                                sampler=sampler_name, guidance=guidance)
  def fill_batch(j, batch, callback):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(options.seed), j), 2)
    start = j * size
    return keyframes_tsr.fill_between_keyframes(
        runner, params, [prompts[p] for p, _ in batch], keyframes[start:start + size], key,
        interval, callback=callback, paste_keyframes=tsr.paste_keyframes)

  out = _in_batches(fill_batch, jobs, size, steps, "tsr", progress, on_step)
  settings = {"tsr_workdir": os.path.abspath(tsr.workdir), "tsr_step": step,
              "tsr_steps": steps, "tsr_keyframe_interval": interval,
              "tsr_paste_keyframes": tsr.paste_keyframes}
  return out, settings, int(c.sample.fps)


def _upsample(cascade: CascadeOptions, pixels: np.ndarray, jobs, prompts, size: int,
              options: SampleOptions, guidance: float, sampler_name: str,
              base_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, progress: bool,
              on_step: Callable[[int], None] | None) -> tuple[np.ndarray, dict]:
  """The base clips `pixels` upsampled by the SSR run of `cascade` (same batches)."""
  setup, params, step, _ = trained_stage.load_stage(cascade.workdir, "ssr", cascade.step,
                                                    options.params, mesh)
  c = setup.config
  if pixels.ndim != 5:
    raise ValueError("the SSR cascade upsamples videos; sample the 'video' stage")
  low = int(c.stage.ssr.low_resolution)
  if pixels.shape[2] != low:
    raise ValueError(f"the SSR run in {cascade.workdir} upsamples {low}x{low} clips but the "
                     f"base model makes {pixels.shape[2]}x{pixels.shape[3]}")
  if base_config.text.to_dict() != c.text.to_dict():
    logging.info("the SSR run encodes prompts with its own text encoder")
  steps = cascade.steps or c.diffusion.sample_steps
  runner = trained_stage.runner(cascade_lib.SSRSampler, setup, mesh, steps=steps,
                                sampler=sampler_name, guidance=guidance, merge=cascade.merge)
  layout = cascade_lib.window_layout(c, pixels.shape[1])
  def upsample_batch(j, batch, callback):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(options.seed), j), 1)
    start = j * size
    return runner(params, [prompts[p] for p, _ in batch], pixels[start:start + size], key,
                  callback=callback)

  out = _in_batches(upsample_batch, jobs, size, steps, "ssr", progress, on_step)
  settings = {"ssr_workdir": os.path.abspath(cascade.workdir), "ssr_step": step,
              "ssr_steps": steps, "ssr_merge": cascade.merge,
              "ssr_resolution": int(c.stage.ssr.resolution),
              "ssr_noise_aug": float(c.stage.ssr.sample_noise_aug),
              "ssr_window_starts": list(layout.starts), "ssr_window": layout.window}
  return out, settings


def _in_batches(run_batch: Callable[[int, list, Callable[[int], None]], np.ndarray], jobs: list,
                size: int, steps: int, label: str, progress: bool,
                on_step: Callable[[int], None] | None) -> np.ndarray:
  """`run_batch(j, jobs of batch j, per-step callback)` over batches of `size` jobs, each with
  its own progress bar of `steps` denoising steps; the outputs concatenated in job order."""
  batches = [jobs[i:i + size] for i in range(0, len(jobs), size)]
  out = []
  for j, batch in enumerate(batches):
    desc = f"{label} {j + 1}/{len(batches)}" if len(batches) > 1 else label
    with tqdm.tqdm(total=steps, desc=desc, unit="step", disable=not progress) as bar:

      def callback(s, bar=bar):
        bar.update(1)
        if on_step is not None:
          on_step(s)

      out.append(run_batch(j, batch, callback))
  return np.concatenate(out)
