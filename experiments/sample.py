r"""Samples videos from a trained run into a folder with an `index.html` gallery.

  python -m experiments.sample --workdir=runs/demo --prompt="a red circle moves left" \
      --prompt="a blue square bounces" --num_samples=2 --seed=0

Reads the stage's own `config.json` from the workdir (latest checkpoint of the `video` stage,
EMA weights, unless `--stage`, `--step`, `--params=raw`). Writes per sample an mp4 and a GIF,
a contact sheet, the XT slice and a JSON record into `--out` (default
`<workdir>/<stage>/sampled/<step>/`); open its `index.html` in a browser.

Applications (SPEC §4-§5; masks are white where pixels are generated):

  --mode=i2v --image=IMG                   image-to-video (stage `conditional`)
  --mode=inpaint --video=VID --mask=MASK   fill the white region of every frame
  --mode=outpaint --video=VID --mask=MASK  generate the white surround of the black region
  --mode=cinemagraph --image=IMG --mask=MASK  animate the white region only
  --mode=v2v --video=VID --strength=0.6    SDEdit under the new prompt (stage `video`)
  --style_workdir=RUN --style_alpha=0.75   spatial weights blended with a `t2i_style` run
  --ssr_workdir=RUN                        upsample with an `ssr` run (temporal MultiDiffusion)
  --tsr_workdir=RUN                        keyframes + TSR baseline: the video stage's clips are
                                           keyframes, a `tsr` run fills the frames between them
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's directory.")
_STAGE = flags.DEFINE_string("stage", None, "Stage to sample from ('video', 't2i' or "
                             "'conditional'; default: 'conditional' for the conditional modes, "
                             "else 'video').")
_MODE = flags.DEFINE_enum("mode", "t2v", ["t2v", "i2v", "inpaint", "outpaint", "cinemagraph",
                                          "v2v"], "What to generate (see the module doc).")
_IMAGE = flags.DEFINE_string("image", None, "Input image (i2v, cinemagraph).")
_VIDEO = flags.DEFINE_string("video", None, "Input video (inpaint, outpaint, v2v).")
_MASK = flags.DEFINE_string("mask", None, "Mask image, white = pixels to generate (inpaint, "
                            "outpaint, cinemagraph).")
_STRENGTH = flags.DEFINE_float("strength", 0.6, "v2v: SDEdit noise level in [0, 1].")
_PASTE_KNOWN = flags.DEFINE_bool("paste_known", True, "Conditional modes: paste the known "
                                 "pixels over the output (off: the model's own reconstruction).")
_STYLE_WORKDIR = flags.DEFINE_string("style_workdir", None, "A run with a 't2i_style' stage.")
_STYLE_ALPHA = flags.DEFINE_float("style_alpha", 0.75, "Style weight a: spatial W = a W_style "
                                  "+ (1 - a) W_orig.")
_SSR_WORKDIR = flags.DEFINE_string("ssr_workdir", None, "A run with an 'ssr' stage: upsample "
                                   "the samples with it.")
_SSR_STEPS = flags.DEFINE_integer("ssr_steps", None, "SSR denoising steps (default: the SSR "
                                  "run's config).")
_SSR_MERGE = flags.DEFINE_enum("ssr_merge", "average", ["average", "independent"],
                               "Temporal windows: MultiDiffusion averaging or independent "
                               "windows (the seam baseline).")
_TSR_WORKDIR = flags.DEFINE_string("tsr_workdir", None, "A run with a 'tsr' stage: the "
                                   "video stage's clips are its keyframes; it fills the frames "
                                   "between them (the keyframes + TSR cascade baseline).")
_TSR_STEPS = flags.DEFINE_integer("tsr_steps", None, "TSR denoising steps (default: the TSR "
                                  "run's config).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_PARAMS = flags.DEFINE_enum("params", "ema", ["ema", "raw"], "EMA or raw parameters.")
_PROMPT = flags.DEFINE_multi_string("prompt", [], "A prompt (repeatable).")
_PROMPTS_FILE = flags.DEFINE_string("prompts_file", None, "Text file with one prompt a line.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Samples per prompt.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (same seed, same videos).")
_STEPS = flags.DEFINE_integer("steps", None, "Denoising steps (default: the run's config).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Classifier-free guidance scale (default: "
                               "the run's config).")
_SAMPLER = flags.DEFINE_enum("sampler", None, ["ddpm", "ddim"], "Sampler (default: the run's "
                             "config).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Clips per device call (0 = all at once).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: "
                           "<workdir>/<stage>/sampled/<step>).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional config file overriding the run's config.json (its model, text, "
    "diffusion and data fields must match the checkpoint's).")
_CPU_DEVICES = cli.define_cpu_devices()
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.init(_CPU_DEVICES.value)
  from stunet.sampling import sample_run

  prompts = sample_run.read_prompts(_PROMPT.value, _PROMPTS_FILE.value)
  options = sample_run.SampleOptions(
      num_samples=_NUM_SAMPLES.value, seed=_SEED.value, steps=_STEPS.value,
      guidance=_GUIDANCE.value, sampler=_SAMPLER.value, params=_PARAMS.value,
      batch_size=_BATCH_SIZE.value)
  inputs = sample_run.ModeInputs(mode=_MODE.value, image=_IMAGE.value, video=_VIDEO.value,
                                 mask=_MASK.value, strength=_STRENGTH.value,
                                 paste_known=_PASTE_KNOWN.value)
  style = (sample_run.StyleOptions(workdir=_STYLE_WORKDIR.value, alpha=_STYLE_ALPHA.value)
           if _STYLE_WORKDIR.value else None)
  cascade = (sample_run.CascadeOptions(workdir=_SSR_WORKDIR.value, steps=_SSR_STEPS.value,
                                       merge=_SSR_MERGE.value)
             if _SSR_WORKDIR.value else None)
  tsr = (sample_run.TSROptions(workdir=_TSR_WORKDIR.value, steps=_TSR_STEPS.value)
         if _TSR_WORKDIR.value else None)
  result = sample_run.sample_run(_WORKDIR.value, prompts, stage=_STAGE.value,
                                 step=_STEP.value, options=options, out_dir=_OUT.value,
                                 config=_CONFIG.value, inputs=inputs, style=style,
                                 cascade=cascade, tsr=tsr)
  print(f"{len(result.entries)} samples from step {result.step}: {result.gallery_path}")


if __name__ == "__main__":
  cli.run(main)
