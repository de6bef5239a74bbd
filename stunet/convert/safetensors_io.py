"""Reads safetensors checkpoints as numpy, tracking which tensors a converter consumed.

Converters of public checkpoints (T5 encoders, diffusers U-Nets) must map every tensor in a
file or report it: nothing may be dropped silently. ``CheckpointTensors`` gives them a single
place to ``take`` tensors by name, ``ignore`` whole prefixes with a stated reason (e.g. the
decoder of an encoder-decoder checkpoint) and finally ``check_all_consumed``, which names any
leftover tensor.

The file format is parsed here rather than with ``safetensors.numpy`` because numpy has no
bfloat16 and most public checkpoints are stored in it; ``ml_dtypes`` (a JAX dependency)
provides the dtype, and ``np.memmap`` reads each tensor only when it is taken.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from typing import Iterable, Sequence

import ml_dtypes
import numpy as np

_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}

# Headers larger than this are not plausible and indicate a corrupt or non-safetensors file.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(ValueError):
  """A checkpoint file is malformed or does not match what the converter expects."""


class MissingTensorError(CheckpointError):
  """A tensor the converter needs is absent from the checkpoint."""


class UnexpectedTensorError(CheckpointError):
  """The checkpoint holds tensors that the converter neither mapped nor ignored."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """Where one tensor lives: its file, dtype, shape and byte range in the data section."""

  path: str
  dtype: np.dtype
  shape: tuple[int, ...]
  begin: int  # absolute byte offset in the file
  end: int


@dataclasses.dataclass(frozen=True)
class IgnoredGroup:
  """Tensors deliberately left out by a converter, reported as a group."""

  prefix: str
  count: int
  reason: str


def read_safetensors_header(path: str) -> dict[str, TensorInfo]:
  """Parses a safetensors file's header into ``{name: TensorInfo}`` without reading data."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    prefix = f.read(8)
    if len(prefix) != 8:
      raise CheckpointError(f"{path}: too short to be a safetensors file ({size} bytes).")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > min(_MAX_HEADER_BYTES, size - 8):
      raise CheckpointError(
          f"{path}: header length {header_len} is impossible for a {size}-byte file; "
          "not a safetensors file or corrupt.")
    try:
      header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise CheckpointError(f"{path}: header is not valid JSON ({e}).") from e
  if not isinstance(header, dict):
    raise CheckpointError(f"{path}: header is not a JSON object.")
  data_start = 8 + header_len
  infos = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
      raise CheckpointError(f"{path}: header entry for {name!r} lacks dtype/shape/data_offsets.")
    dtype_name = entry["dtype"]
    if dtype_name not in _DTYPES:
      raise CheckpointError(
          f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}; "
          f"supported: {sorted(_DTYPES)}.")
    dtype = _DTYPES[dtype_name]
    shape = tuple(int(d) for d in entry["shape"])
    begin, end = (int(o) for o in entry["data_offsets"])
    if end - begin != math.prod(shape) * dtype.itemsize or data_start + end > size:
      raise CheckpointError(
          f"{path}: tensor {name!r} ({dtype_name}{list(shape)}) has byte range "
          f"[{begin}, {end}) that does not match its shape or the file size.")
    infos[name] = TensorInfo(path, dtype, shape, data_start + begin, data_start + end)
  return infos


def find_safetensors_files(model_dir: str, weights_name: str = "model.safetensors") -> list[str]:
  """The safetensors files of an HF-style model directory: one file or an indexed shard set."""
  single = os.path.join(model_dir, weights_name)
  index = single + ".index.json"
  if os.path.isfile(single):
    return [single]
  if os.path.isfile(index):
    with open(index, encoding="utf-8") as f:
      weight_map = json.load(f).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
      raise CheckpointError(f"{index}: has no 'weight_map'.")
    shards = sorted(set(weight_map.values()))
    paths = [os.path.join(model_dir, s) for s in shards]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise CheckpointError(f"{index} lists shard files that do not exist: {missing}.")
    return paths
  present = sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else None
  raise FileNotFoundError(
      f"No {weights_name} (or {weights_name}.index.json) in {model_dir!r}; "
      f"directory contents: {present}. Only safetensors checkpoints are read (no pickle).")


class CheckpointTensors:
  """The tensors of one checkpoint (one or more safetensors files), consumed by name."""

  def __init__(self, paths: Sequence[str]):
    if not paths:
      raise ValueError("CheckpointTensors needs at least one safetensors file.")
    self._infos: dict[str, TensorInfo] = {}
    for path in paths:
      for name, info in read_safetensors_header(path).items():
        if name in self._infos:
          raise CheckpointError(
              f"Tensor {name!r} appears in both {self._infos[name].path} and {path}.")
        self._infos[name] = info
    self._paths = tuple(paths)
    self._consumed: set[str] = set()
    self._ignored: list[IgnoredGroup] = []

  @classmethod
  def from_directory(cls, model_dir: str,
                     weights_name: str = "model.safetensors") -> CheckpointTensors:
    return cls(find_safetensors_files(model_dir, weights_name))

  @property
  def source(self) -> str:
    return self._paths[0] if len(self._paths) == 1 else f"{len(self._paths)} shards in " + (
        os.path.dirname(self._paths[0]))

  def names(self) -> list[str]:
    return sorted(self._infos)

  def __contains__(self, name: str) -> bool:
    return name in self._infos

  def __len__(self) -> int:
    return len(self._infos)

  def info(self, name: str) -> TensorInfo:
    self._require(name)
    return self._infos[name]

  def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Reads tensor ``name`` (marking it consumed); checks ``shape`` when given."""
    info = self.info(name)
    if shape is not None and tuple(shape) != info.shape:
      raise CheckpointError(
          f"Tensor {name!r} in {self.source} has shape {list(info.shape)}, "
          f"expected {list(shape)}.")
    array = np.fromfile(info.path, dtype=info.dtype, count=math.prod(info.shape),
                        offset=info.begin).reshape(info.shape)
    self._consumed.add(name)
    return array

  def ignore(self, prefix: str, reason: str) -> int:
    """Marks every not-yet-consumed tensor starting with ``prefix`` as deliberately unused."""
    names = [n for n in self._infos if n.startswith(prefix) and n not in self._consumed]
    if names:
      self._consumed.update(names)
      self._ignored.append(IgnoredGroup(prefix, len(names), reason))
    return len(names)

  @property
  def ignored(self) -> list[IgnoredGroup]:
    return list(self._ignored)

  def remaining(self) -> list[str]:
    return sorted(set(self._infos) - self._consumed)

  def check_all_consumed(self) -> None:
    """Raises ``UnexpectedTensorError`` naming every tensor nobody mapped or ignored."""
    leftover = self.remaining()
    if leftover:
      raise UnexpectedTensorError(
          f"{len(leftover)} tensor(s) in {self.source} are not used by the converter: "
          f"{_summarise(leftover)}. The checkpoint does not match the expected architecture.")

  def _require(self, name: str) -> None:
    if name not in self._infos:
      raise MissingTensorError(
          f"Tensor {name!r} is missing from {self.source} "
          f"({len(self._infos)} tensors present, e.g. {_summarise(self.names(), 5)}).")


def _summarise(names: Iterable[str], limit: int = 20) -> str:
  names = list(names)
  shown = ", ".join(repr(n) for n in names[:limit])
  return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
