"""Converts local public checkpoints into stunet workdirs (no downloads, no torch).

A diffusers UNet2DConditionModel directory (SD-style or DeepFloyd-IF-stage-I-style), as the
T2I U-Net that the video stage inflates:
  python -m experiments.convert --from=diffusers --src=path/to/unet --out=workdirs/t2i_import

A HF T5 encoder directory (T5EncoderModel or a full T5 checkpoint; the decoder is skipped):
  python -m experiments.convert --from=t5 --src=path/to/t5 --out=workdirs/t5_import

Both write OUT/config.json and the orbax checkpoint OUT/checkpoints/0/state holding
{"params": ...}; see `stunet.convert.imported_checkpoint` for the layout.
"""

from absl import app
from absl import flags
from absl import logging

from experiments import cli

_FROM = flags.DEFINE_enum("from", None, ["diffusers", "t5"], "Checkpoint format of --src.")
_SRC = flags.DEFINE_string("src", None, "Local model directory (config.json + safetensors).")
_OUT = flags.DEFINE_string("out", None, "Workdir to write (must not hold a checkpoint yet).")
flags.mark_flags_as_required(["from", "src", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Imported lazily so --help stays fast.
  import dataclasses  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top

  from stunet.convert import imported_checkpoint  # pylint: disable=g-import-not-at-top

  source = {"format": _FROM.value, "source": os.path.abspath(_SRC.value)}
  try:
    if _FROM.value == "diffusers":
      from stunet.convert import diffusers_unet  # pylint: disable=g-import-not-at-top
      model, params = diffusers_unet.load_diffusers_unet(_SRC.value)
      with open(os.path.join(_SRC.value, "config.json"), encoding="utf-8") as f:
        width = diffusers_unet.text_width(json.load(f))
      config = {"model": model, "text_width": width, "imported_from": source}
    else:
      from stunet.convert import t5  # pylint: disable=g-import-not-at-top
      t5_config, variables, ignored = t5.load_t5_encoder_with_report(_SRC.value)
      for group in ignored:
        logging.info("Ignored %d tensor(s) under %r: %s", group.count, group.prefix, group.reason)
      params = variables["params"]
      config = {"t5": dataclasses.asdict(t5_config), "imported_from": source}
  except ValueError as e:
    # The importer names the config.json field it refuses; say whose config.json it is.
    raise ValueError(f"--src={_SRC.value}: {e}") from e
  path = imported_checkpoint.save(_OUT.value, config, params)
  logging.info("Wrote %s and %s", os.path.join(_OUT.value, imported_checkpoint.CONFIG_NAME),
               path)


if __name__ == "__main__":
  cli.run(main)
