"""What to sample and how: the settings of `stunet.sampling.sample_run.sample_run` (SPEC §5).

`SampleOptions` (clips, seed, sampler, steps, guidance, EMA or raw weights), `ModeInputs` (the
mode and its input files), `StyleOptions` / `CascadeOptions` / `TSROptions` (a second run that
restyles, upsamples or fills in the clips), `SampleResult`, and `read_prompts`. Each option
class validates itself with errors that name the flag.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from stunet.diffusion import samplers
from stunet.eval import gallery
from stunet.sampling import cascade as cascade_lib

PARAMS = ("ema", "raw")


def _check_steps(steps: int | None, flag: str) -> None:
  """Denoising steps: None (the run's `diffusion.sample_steps`) or a positive integer."""
  if steps is not None and (not isinstance(steps, int) or steps < 1):
    raise ValueError(f"{flag} must be a positive integer, got {steps!r}")


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
    _check_steps(self.steps, "steps")
    if self.sampler is not None and self.sampler not in samplers.SAMPLERS:
      raise ValueError(f"sampler must be one of {samplers.SAMPLERS}, got {self.sampler!r}")
    if self.params not in PARAMS:
      raise ValueError(f"params must be one of {PARAMS}, got {self.params!r}")
    if not isinstance(self.batch_size, int) or self.batch_size < 0:
      raise ValueError(f"batch_size must be a non-negative integer, got {self.batch_size!r}")


MODES = ("t2v", "i2v", "inpaint", "outpaint", "cinemagraph", "v2v")
CONDITIONAL_MODES = ("i2v", "inpaint", "outpaint", "cinemagraph")
# mode -> the inputs it needs (flag names of experiments/sample.py)
MODE_INPUTS = {"t2v": (), "i2v": ("image",), "inpaint": ("video", "mask"),
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
    need = MODE_INPUTS[self.mode]
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
    _check_steps(self.steps, "ssr_steps")
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
    _check_steps(self.steps, "tsr_steps")


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
