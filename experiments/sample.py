r"""Samples videos from a trained run into a folder with an `index.html` gallery.

  python -m experiments.sample --workdir=runs/demo --prompt="a red circle moves left" \
      --prompt="a blue square bounces" --num_samples=2 --seed=0

Reads the stage's own `config.json` from the workdir (latest checkpoint of the `video` stage,
EMA weights, unless `--stage`, `--step`, `--params=raw`). Writes per sample an mp4 and a GIF,
a contact sheet, the XT slice and a JSON record into `--out` (default
`<workdir>/<stage>/sampled/<step>/`); open its `index.html` in a browser.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's directory.")
_STAGE = flags.DEFINE_string("stage", "video", "Stage to sample from ('video' or 't2i').")
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
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "Simulate this many CPU devices (local testing of sharding); 0 = off.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
  import jax  # after flag parsing: the device count must be set before JAX initialises
  if _CPU_DEVICES.value:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  from stunet.apps import sample_run
  from stunet.train import compat

  try:
    prompts = sample_run.read_prompts(_PROMPT.value, _PROMPTS_FILE.value)
    options = sample_run.SampleOptions(
        num_samples=_NUM_SAMPLES.value, seed=_SEED.value, steps=_STEPS.value,
        guidance=_GUIDANCE.value, sampler=_SAMPLER.value, params=_PARAMS.value,
        batch_size=_BATCH_SIZE.value)
    result = sample_run.sample_run(_WORKDIR.value, prompts, stage=_STAGE.value,
                                   step=_STEP.value, options=options, out_dir=_OUT.value,
                                   config=_CONFIG.value)
  except (FileNotFoundError, ValueError, compat.ConfigMismatchError) as e:
    raise SystemExit(f"error: {e}") from None
  print(f"{len(result.entries)} samples from step {result.step}: {result.gallery_path}")


if __name__ == "__main__":
  app.run(main)
