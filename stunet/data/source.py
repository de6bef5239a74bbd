"""Opening a built TFDS dataset (or ArrayRecord files) as a grain random-access source.

The training input (SPEC §2) reads ArrayRecord files written by our TFDS builders without
TensorFlow: grain reads the raw records and the dataset's `features.json` decodes them.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

import grain
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class Source:
  """A split's raw records with what is needed to decode them.

  Attributes:
    records: random-access source of serialized examples.
    features: the TFDS features; ``features.deserialize_example_np(record)`` decodes one.
    metadata: the builder's metadata (``fps`` at least).
    dataset_dir: directory holding the dataset's files and info.
  """
  records: Any
  features: tfds.features.FeaturesDict
  metadata: dict
  dataset_dir: str


def build_command(dataset: str, builder_config: str, data_dir: str) -> str:
  command = (f"python -m experiments.build_data --dataset={dataset} "
             f"--config={builder_config} --data_dir={data_dir}")
  if dataset == "video_folder":
    command += " --video_dir=VIDEOS --captions_csv=CAPTIONS.csv"
  return command


def _version_key(version: str) -> tuple[int, ...]:
  return tuple(int(part) for part in version.split("."))


def dataset_dir(data_dir: str, dataset: str, builder_config: str) -> str:
  """The newest built version of ``data_dir/dataset/builder_config``; names the build command."""
  config_dir = os.path.join(data_dir, dataset, builder_config)
  versions = []
  if os.path.isdir(config_dir):
    for name in os.listdir(config_dir):
      if (all(part.isdigit() for part in name.split("."))
          and os.path.exists(os.path.join(config_dir, name, "dataset_info.json"))):
        versions.append(name)
  if not versions:
    raise FileNotFoundError(
        f"no built dataset {dataset}/{builder_config} under data_dir={data_dir!r} (looked for "
        f"{config_dir}/<version>/dataset_info.json). Build it with:\n  "
        + build_command(dataset, builder_config, data_dir))
  return os.path.join(config_dir, max(versions, key=_version_key))


def open_source(data_dir: str, dataset: str, builder_config: str, split: str,
                files: str = "") -> Source:
  """Opens `split` of a built dataset, or the ArrayRecord files matching the glob `files`.

  With `files`, the features and metadata come from the directory holding the first file.
  """
  if files:
    paths = sorted(glob.glob(files))
    if not paths:
      raise FileNotFoundError(f"data.files={files!r} matches no ArrayRecord files")
    directory = os.path.dirname(paths[0])
  else:
    directory = dataset_dir(data_dir, dataset, builder_config)
  builder = tfds.builder_from_directory(directory)
  if not files:
    if split not in builder.info.splits:
      raise ValueError(f"split {split!r} not in {dataset}/{builder_config}; available: "
                       f"{sorted(builder.info.splits)}")
    paths = [os.fspath(p) for p in builder.info.splits[split].filepaths]
  metadata = dict(builder.info.metadata or {})
  if "fps" not in metadata:
    raise ValueError(f"dataset at {directory} has no 'fps' in its metadata.json; it was not "
                     "built by a stunet builder")
  return Source(records=grain.sources.ArrayRecordDataSource(paths),
                features=builder.info.features, metadata=metadata, dataset_dir=directory)
