"""Text-to-video sampling from a trained run's checkpoint (SPEC §3 samplers, §5 outputs).

`sample_run` restores one stage of a workdir (`workdir/<stage>/checkpoints/<step>`, the latest
by default) with the stage's own `config.json`, so the model built for sampling is the one
that was trained. It generates `num_samples` clips per prompt with the EMA (default) or raw
parameters, sharded over the mesh's batch axes, and writes each clip through
`stunet.eval.gallery.write_sample` (mp4 + GIF, contact sheet, XT slice, JSON of prompt, seed
and settings) plus an `index.html` gallery, by default into `workdir/<stage>/sampled/<step>/`.

Noise depends only on the seed and the batch layout: batch `j` of the run uses
`fold_in(key(seed), j)`, so the same command gives the same pixels on the same mesh.
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

from stunet.data import video_write
from stunet.diffusion import samplers
from stunet.eval import gallery
from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import checkpoint as checkpoint_lib
from stunet.train import compat
from stunet.train import samples as samples_lib
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib

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


def load_run_config(workdir: str, stage: str) -> ml_collections.ConfigDict:
  """The config a stage was trained with (`workdir/<stage>/config.json`)."""
  path = os.path.join(stage_dir(workdir, stage), "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no {stage!r} stage in {os.path.abspath(workdir)} ({path} is missing); train it with "
        f"{TRAIN_COMMAND.format(workdir=workdir)}")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


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
  ckpt = checkpoint_lib.Checkpointer(directory, setup.config.ckpt, read_only=True) \
      if os.path.isdir(directory) else None
  latest = ckpt.latest_step() if ckpt is not None else None
  if latest is None:
    raise FileNotFoundError(
        f"no checkpoint in {directory}; train the {setup.stage.name!r} stage first: "
        f"{TRAIN_COMMAND.format(workdir=os.path.dirname(os.path.dirname(directory)))}")
  if step is None:
    step = latest
  elif step not in ckpt.all_steps():
    ckpt.close()
    raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; saved steps: "
                            f"{sorted(ckpt.all_steps())}")
  if config_override:
    saved = ckpt.restore_meta(step)["compared_fields"]
    compat.check_resume(saved, compat.compared_fields(setup.config),
                        os.path.join(directory, str(step)), allow_change=False)
  rules = tuple(tuple(r) for r in setup.config.mesh.rules)
  target = state_lib.abstract_state(setup.boxed_init, mesh, rules, jax.random.key(0))
  state = ckpt.restore(step, target)
  ckpt.close()
  return (state.ema_params if which == "ema" else state.params), step


def sample_run(workdir: str, prompts: Sequence[str], *, stage: str = "video",
               step: int | None = None, options: SampleOptions = SampleOptions(),
               out_dir: str | None = None,
               config: ml_collections.ConfigDict | None = None,
               mesh: jax.sharding.Mesh | None = None, progress: bool = True,
               on_step: Callable[[int], None] | None = None) -> SampleResult:
  """Samples `options.num_samples` clips per prompt from a stage of `workdir` (module doc).

  Args:
    workdir: the training run's directory.
    prompts: non-empty texts (see `read_prompts`); over-long ones are truncated with a warning.
    stage: 'video' or 't2i'.
    step: checkpoint step (default: the latest).
    options: sampling settings.
    out_dir: output folder (default `workdir/<stage>/sampled/<step>`).
    config: overrides the stage's `config.json`; its model/text/diffusion/data fields must
      match the checkpoint's (`stunet.train.compat.ConfigMismatchError` otherwise).
    mesh: default: `config.mesh` over all devices.
    progress: show a progress bar over denoising steps.
    on_step: extra `(step)` callback after each denoising step.
  """
  options.validate()
  prompts = read_prompts(prompts)
  stage_obj = stages_lib.get_stage(stage)
  run_config = load_run_config(workdir, stage)
  base = run_config if config is None else config
  base = ml_collections.ConfigDict(base.to_dict())
  # Truncation is reported here, once per prompt, whatever mode the run trained with.
  base.text.on_truncation = "silent"
  setup = build_lib.build_stage(base, stage_obj)
  c = setup.config
  mesh = mesh_lib.make_mesh(c.mesh) if mesh is None else mesh
  ckpt_dir = os.path.join(stage_dir(workdir, stage), "checkpoints")
  params, step = _restore_params(setup, mesh, ckpt_dir, step, options.params,
                                 config is not None)

  cut = truncated_prompts(setup.tokenizer, prompts)
  for i in cut:
    warnings.warn(f"prompt {i + 1} is longer than text.max_length={c.text.max_length} tokens "
                  f"and is truncated: {prompts[i][:60]!r}...")

  steps = options.steps or c.diffusion.sample_steps
  sampler_name = options.sampler or c.diffusion.sampler
  guidance = c.diffusion.guidance if options.guidance is None else float(options.guidance)
  runner = samples_lib.Sampler(setup, mesh, steps=steps, sampler=sampler_name, guidance=guidance)
  jobs = [(p, k) for p in range(len(prompts)) for k in range(options.num_samples)]
  size = runner.padded_size(options.batch_size or len(jobs))
  batches = [jobs[i:i + size] for i in range(0, len(jobs), size)]

  pixels = []
  for j, batch in enumerate(batches):
    desc = f"batch {j + 1}/{len(batches)}" if len(batches) > 1 else "sampling"
    with tqdm.tqdm(total=steps, desc=desc, unit="step", disable=not progress) as bar:

      def callback(s, bar=bar):
        bar.update(1)
        if on_step is not None:
          on_step(s)

      key = jax.random.fold_in(jax.random.key(options.seed), j)
      pixels.append(runner(params, [prompts[p] for p, _ in batch], key, callback=callback))
  pixels = np.concatenate(pixels)

  out_dir = out_dir or os.path.join(stage_dir(workdir, stage), "sampled", str(step))
  video = video_write.to_uint8(pixels)
  if video.ndim == 4:
    video = video[:, None]  # images: one-frame clips
  settings = {"stage": stage, "step": step, "params": options.params, "sampler": sampler_name,
              "steps": steps, "guidance": guidance, "eta": c.diffusion.eta,
              "thresholding": c.diffusion.thresholding, "batch_size": size}
  entries = []
  if jax.process_index() == 0:
    for i, (p, k) in enumerate(jobs):
      j = i // size
      entries.append(gallery.write_sample(
          out_dir, f"p{p:03d}_s{k:02d}", video[i], prompt=prompts[p], seed=options.seed,
          settings={**settings, "batch": j, "index_in_batch": i - j * size},
          fps=c.sample.fps))
    title = f"{os.path.basename(os.path.abspath(workdir))} / {stage} step {step}"
    gallery_path = gallery.write_gallery(out_dir, entries, title=title)
    logging.info("wrote %d samples and %s", len(entries), gallery_path)
  else:
    gallery_path = os.path.join(out_dir, "index.html")
  return SampleResult(out_dir=out_dir, step=step, entries=entries, pixels=pixels,
                      gallery_path=gallery_path)
