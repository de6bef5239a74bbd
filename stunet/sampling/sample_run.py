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
  (`stunet.apps.cascade`); the written clips are the high-resolution ones.
- `TSROptions`: the keyframes + temporal super-resolution baseline
  (`stunet.conditioning.keyframes_tsr`):
  the `video` stage's clips are keyframes, placed every `stage.tsr.keyframe_interval` frames,
  and a `tsr` run fills the frames between them; the written clips are the full ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any, Callable, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from stunet import config as config_lib
from stunet.apps import cascade as cascade_lib
from stunet.conditioning import conditional_sampling
from stunet.conditioning import inputs as inputs_lib
from stunet.conditioning import keyframes_tsr
from stunet.conditioning import masks
from stunet.conditioning import stylize
from stunet.data import video_write
from stunet.diffusion import samplers
from stunet.eval import gallery
from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import restore as restore_lib
from stunet.train import compat
from stunet.train import samples as samples_lib
from stunet.train import stages as stages_lib

PARAMS = ("ema", "raw")
TRAIN_COMMAND = "python -m experiments.train --config=<config file> --workdir={workdir}"


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """Sampling settings; None falls back to the run's `config.diffusion`."""

  num_samples: int = 1  # clips per prompt
  seed: int = 0
  steps: int | None = None
  guidance: float | None = None
  sampler: str | None = None  # 'ddim' | 'ddpm'
  params: str = "ema"  # 'ema' | 'raw'
  batch_size: int = 0  # clips per device call (rounded up to the mesh); 0 = all at once

  def validate(self) -> None:
    if not isinstance(self.num_samples, int) or self.num_samples < 1:
      raise ValueError(f"num_samples must be a positive integer, got {self.num_samples!r}")
    if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
      raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
    if self.sampler is not None and self.sampler not in samplers.SAMPLERS:
      raise ValueError(f"sampler must be one of {samplers.SAMPLERS}, got {self.sampler!r}")
    if self.params not in PARAMS:
      raise ValueError(f"params must be one of {PARAMS}, got {self.params!r}")
    if not isinstance(self.batch_size, int) or self.batch_size < 0:
      raise ValueError(f"batch_size must be a non-negative integer, got {self.batch_size!r}")


MODES = ("t2v", "i2v", "inpaint", "outpaint", "cinemagraph", "v2v")
CONDITIONAL_MODES = ("i2v", "inpaint", "outpaint", "cinemagraph")
# mode -> the inputs it needs (flag names of experiments/sample.py)
_MODE_INPUTS = {"t2v": (), "i2v": ("image",), "inpaint": ("video", "mask"),
                "outpaint": ("video", "mask"), "cinemagraph": ("image", "mask"),
                "v2v": ("video",)}


@dataclasses.dataclass(frozen=True)
class ModeInputs:
  """What to generate from (module doc): the mode and its input files."""

  mode: str = "t2v"
  image: str | None = None
  video: str | None = None
  mask: str | None = None  # white = pixels to generate
  strength: float = 0.6  # v2v: SDEdit noise level in [0, 1]
  paste_known: bool = True  # conditional modes: known pixels pasted over the output

  def validate(self) -> None:
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
    need = _MODE_INPUTS[self.mode]
    for name in ("image", "video", "mask"):
      given = getattr(self, name)
      if name in need and not given:
        raise ValueError(f"--mode={self.mode} needs --{name}")
      if name not in need and given:
        raise ValueError(f"--{name} is not used by --mode={self.mode} (it takes "
                         f"{', '.join('--' + n for n in need) or 'no input files'})")
    if self.mode == "v2v" and not (isinstance(self.strength, (int, float))
                                   and 0.0 <= self.strength <= 1.0):
      raise ValueError(f"strength must be in [0, 1], got {self.strength!r}")

  def default_stage(self) -> str:
    return "conditional" if self.mode in CONDITIONAL_MODES else "video"


@dataclasses.dataclass(frozen=True)
class StyleOptions:
  """Blend the spatial weights of a `t2i_style` run into the video model."""
  workdir: str
  alpha: float = 0.75
  step: int | None = None

  def validate(self) -> None:
    if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"style_alpha must be in [0, 1], got {self.alpha!r}")


@dataclasses.dataclass(frozen=True)
class CascadeOptions:
  """Upsample the base clips with an `ssr` run (temporal MultiDiffusion)."""
  workdir: str
  step: int | None = None
  steps: int | None = None  # SSR denoising steps (default: the SSR run's config)
  merge: str = "average"  # 'average' (MultiDiffusion) | 'independent' (seam baseline)

  def validate(self) -> None:
    if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
      raise ValueError(f"ssr_steps must be a positive integer, got {self.steps!r}")
    if self.merge not in cascade_lib.MERGES:
      raise ValueError(f"ssr merge must be one of {cascade_lib.MERGES}, got {self.merge!r}")


@dataclasses.dataclass(frozen=True)
class TSROptions:
  """Fill the frames between the base clips (keyframes) with a `tsr` run."""
  workdir: str
  step: int | None = None
  steps: int | None = None  # TSR denoising steps (default: the TSR run's config)
  paste_keyframes: bool = True  # the keyframes are exact in the output

  def validate(self) -> None:
    if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
      raise ValueError(f"tsr_steps must be a positive integer, got {self.steps!r}")


@dataclasses.dataclass
class SampleResult:
  out_dir: str
  step: int
  entries: list[gallery.SampleEntry]
  pixels: np.ndarray  # float32 [n t h w 3] (or [n h w 3] for images) in [-1, 1]
  gallery_path: str


def read_prompts(prompts: Sequence[str] = (), prompts_file: str | None = None) -> list[str]:
  """`prompts`, then the non-blank lines of `prompts_file`; raises ValueError if unusable."""
  out = []
  for i, p in enumerate(prompts or ()):
    if not p.strip():
      raise ValueError(f"prompt {i + 1} of --prompt is empty; give a non-empty text")
    out.append(p.strip())
  if prompts_file:
    try:
      with open(prompts_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
      raise ValueError(f"cannot read the prompts file {prompts_file!r}: {e}") from None
    file_prompts = [line.strip() for line in lines if line.strip()]
    if not file_prompts:
      raise ValueError(f"the prompts file {prompts_file!r} has no prompts (one per line)")
    out.extend(file_prompts)
  if not out:
    raise ValueError("no prompts: give --prompt (repeatable) or --prompts_file")
  return out


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples the configs use."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def stage_dir(workdir: str, stage: str) -> str:
  stages_lib.get_stage(stage)  # unknown stage: ValueError naming the registered ones
  return os.path.join(os.path.abspath(workdir), stage)


def _with_new_fields(saved: dict, defaults: dict) -> dict:
  """`saved` plus the fields of `defaults` it lacks (recursively); saved values win."""
  out = dict(saved)
  for key, value in defaults.items():
    if key not in out:
      out[key] = value
    elif isinstance(value, dict) and isinstance(out[key], dict):
      out[key] = _with_new_fields(out[key], value)
  return out


def load_run_config(workdir: str, stage: str) -> ml_collections.ConfigDict:
  """The config a stage was trained with (`workdir/<stage>/config.json`).

  A field added to the code after the run was written takes its default, which is the
  behaviour the run was trained with (new options default to the old behaviour; the resume
  check, `stunet.train.compat`, treats them the same way).
  """
  path = os.path.join(stage_dir(workdir, stage), "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no {stage!r} stage in {os.path.abspath(workdir)} ({path} is missing); train it with "
        f"{TRAIN_COMMAND.format(workdir=workdir)}")
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  variant = saved.get("data", {}).get("builder_config", "demo")
  try:
    defaults = config_lib.default_config(variant).to_dict()
  except ValueError:  # a dataset variant this code does not know: its data section as saved
    defaults = config_lib.default_config().to_dict()
    defaults.pop("data")
  return ml_collections.ConfigDict(_tuples(_with_new_fields(saved, defaults)))


def truncated_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[int]:
  """Indices of the prompts the tokenizer cuts to `max_length` tokens."""
  if hasattr(tokenizer, "tokenize"):  # ByteTokenizer reports truncation itself
    return [int(i) for i in np.flatnonzero(tokenizer.tokenize(list(prompts))[2])]
  if hasattr(tokenizer, "encode_unpadded"):  # SentencePiece
    return [i for i, p in enumerate(prompts)
            if len(tokenizer.encode_unpadded(p)) > tokenizer.max_length]
  _, mask = tokenizer(list(prompts))  # unknown tokenizer: a full row may have been cut
  return [int(i) for i in np.flatnonzero(np.asarray(mask)[:, -1])]


def _restore_params(setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, directory: str,
                    step: int | None, which: str, config_override: bool) -> tuple[Any, int]:
  """`(params, step)` of `which` ('ema' | 'raw') restored onto `mesh`."""
  def missing():
    return FileNotFoundError(
        f"no checkpoint in {directory}; train the {setup.stage.name!r} stage first: "
        f"{TRAIN_COMMAND.format(workdir=os.path.dirname(os.path.dirname(directory)))}")

  def check(meta, saved_step):  # an overridden config must still describe the checkpoint
    compat.check_resume(meta["compared_fields"], compat.compared_fields(setup.config),
                        os.path.join(directory, str(saved_step)), allow_change=False)

  return restore_lib.restore_params(directory, setup, mesh, step=step, which=which,
                                    missing=missing, check=check if config_override else None)


# Compiled samplers of this process, keyed by everything they close over: repeated calls
# (notebooks, benchmarks, tests) compile once per model and setting.
_RUNNERS: dict[tuple, Any] = {}


def _runner(cls, setup: build_lib.StageSetup, mesh: jax.sharding.Mesh, **kwargs):
  key = (cls, setup.stage.name, setup.config.to_json_best_effort(sort_keys=True), mesh,
         tuple(sorted(kwargs.items())))
  if key not in _RUNNERS:
    _RUNNERS[key] = cls(setup, mesh, **kwargs)
  return _RUNNERS[key]


def _load_stage(workdir: str, stage: str, step: int | None, which: str,
                mesh: jax.sharding.Mesh | None,
                config: ml_collections.ConfigDict | None = None):
  """`(setup, params, step, mesh)` of a trained stage of `workdir`."""
  run_config = load_run_config(workdir, stage)
  base = ml_collections.ConfigDict((run_config if config is None else config).to_dict())
  # Truncation is reported by the caller, once per prompt, whatever mode the run trained with.
  base.text.on_truncation = "silent"
  setup = build_lib.build_stage(base, stages_lib.get_stage(stage))
  mesh = mesh_lib.make_mesh(setup.config.mesh) if mesh is None else mesh
  ckpt_dir = os.path.join(stage_dir(workdir, stage), "checkpoints")
  params, step = _restore_params(setup, mesh, ckpt_dir, step, which, config is not None)
  return setup, params, step, mesh


def styled_params(params: Any, style: StyleOptions, mesh: jax.sharding.Mesh) -> tuple[Any, int]:
  """`(params, style step)`: video `params` whose spatial U-Net weights are blended with the
  style run's (EMA) T2I weights, `a W_style + (1 - a) W`; temporal weights and the text
  encoder unchanged."""
  style.validate()
  _, style_params, step, _ = _load_stage(style.workdir, "t2i_style", style.step, "ema", mesh)
  unet = stylize.interpolate_spatial(params["unet"], style_params["unet"], style.alpha)
  return {**params, "unet": unet}, step


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
  setup, params, step, mesh = _load_stage(workdir, stage, step, options.params, mesh, config)
  c = setup.config
  if style is not None:
    params, style_step = styled_params(params, style, mesh)
  cond = known = known_mask = x_init = None
  if inputs.mode in CONDITIONAL_MODES:
    cond, known, known_mask = _conditioning(inputs, c.data.frames, c.data.resolution)
  elif inputs.mode == "v2v":
    x_init = inputs_lib.read_video(inputs.video, c.data.frames, c.data.resolution)[None]

  cut = truncated_prompts(setup.tokenizer, prompts)
  for i in cut:
    warnings.warn(f"prompt {i + 1} is longer than text.max_length={c.text.max_length} tokens "
                  f"and is truncated: {prompts[i][:60]!r}...")

  steps = options.steps or c.diffusion.sample_steps
  sampler_name = options.sampler or c.diffusion.sampler
  guidance = c.diffusion.guidance if options.guidance is None else float(options.guidance)
  runner = _runner(samples_lib.Sampler, setup, mesh, steps=steps, sampler=sampler_name,
                   guidance=guidance)
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
              "mode": inputs.mode}
  for name in _MODE_INPUTS[inputs.mode]:
    settings[name] = os.path.abspath(getattr(inputs, name))
  if inputs.mode == "v2v":
    settings["strength"] = inputs.strength
  if inputs.mode in CONDITIONAL_MODES:
    settings["paste_known"] = inputs.paste_known
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

  out_dir = out_dir or os.path.join(stage_dir(workdir, stage), "sampled", str(step))
  video = video_write.to_uint8(pixels)
  if video.ndim == 4:
    video = video[:, None]  # images: one-frame clips
  entries = []
  if jax.process_index() == 0:
    for i, (p, k) in enumerate(jobs):
      j = i // size
      entries.append(gallery.write_sample(
          out_dir, f"p{p:03d}_s{k:02d}", video[i], prompt=prompts[p], seed=options.seed,
          settings={**settings, "batch": j, "index_in_batch": i - j * size},
          fps=fps))
    title = f"{os.path.basename(os.path.abspath(workdir))} / {stage} step {step}"
    gallery_path = gallery.write_gallery(out_dir, entries, title=title)
    logging.info("wrote %d samples and %s", len(entries), gallery_path)
  else:
    gallery_path = os.path.join(out_dir, "index.html")
  return SampleResult(out_dir=out_dir, step=step, entries=entries, pixels=pixels,
                      gallery_path=gallery_path)


def _fill_frames(tsr: TSROptions, keyframes: np.ndarray, jobs, prompts, size: int,
                 options: SampleOptions, guidance: float, sampler_name: str,
                 mesh: jax.sharding.Mesh, progress: bool,
                 on_step: Callable[[int], None] | None) -> tuple[np.ndarray, dict, int]:
  """`(full clips, settings, fps)`: the TSR run of `tsr` fills in the keyframe clips."""
  setup, params, step, _ = _load_stage(tsr.workdir, "tsr", tsr.step, options.params, mesh)
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
  runner = _runner(samples_lib.Sampler, setup, mesh, steps=steps, sampler=sampler_name,
                   guidance=guidance)
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
  setup, params, step, _ = _load_stage(cascade.workdir, "ssr", cascade.step, options.params,
                                       mesh)
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
  runner = _runner(cascade_lib.SSRSampler, setup, mesh, steps=steps, sampler=sampler_name,
                   guidance=guidance, merge=cascade.merge)
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
