"""The grain input pipeline: built TFDS dataset -> sharded, checkpointable training batches.

Feeds the video model (SPEC §2) and the T2I stage: seeded global shuffle, decode, random
temporal crop with frame-stride sampling to the target fps, optional random spatial crop,
optional horizontal flip (off by default because captions name directions; when on,
'left'/'right' are swapped in the caption), per-process sharding, per-host batching, an
optional tokenizer hook, prefetch, and conversion to global jax arrays sharded over the mesh's
batch axes.

Per-process sharding keeps the global batch independent of the process count: every process
describes the same global sequence of examples (the shuffle and each example's random crop
and flip depend only on the seed and the example's place in it), cut into global batches, and
reads only its own contiguous rows of each global batch, the rows its devices hold in the
global array (`jax.make_array_from_process_local_data`). So 2 processes x 2 devices train on
exactly the batches 1 process x 4 devices would, and no two processes read the same example.
With several processes a final partial global batch is always dropped (it cannot be split
into equal per-process parts).

Batches are dicts:
  video      uint8 [b, t, h, w, 3]  (video modality; the train step maps it to [-1, 1])
  image      uint8 [b, h, w, 3]     (image modality)
  text_ids   int32 [b, L], text_mask bool [b, L]  (only with a tokenizer)
  caption    list of b str          (host side)
  index      int64 [b]              (record index within the split; host side)

The returned iterator is a grain `DatasetIterator`: ``get_state()``/``set_state()`` resume
exactly, and orbax saves it with ``grain.checkpoint.CheckpointSave(iterator)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import grain
import jax
import ml_collections
import numpy as np

from stunet.data import captions
from stunet.data import global_batch
from stunet.data import source as source_lib

# Strings -> (ids int32 [b, L], mask bool [b, L]); see `stunet.text.interface.Tokenizer`.
TokenizeFn = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class _WithIndex:
  """Keeps the record's index in the split next to its bytes (for provenance and tests)."""
  num_records: int

  def __call__(self, index: int, record: bytes) -> tuple[int, bytes]:
    # Repeated epochs reach the source with indices past its end (it wraps them itself).
    return index % self.num_records, record


@dataclasses.dataclass(frozen=True)
class _Decode:
  features: Any

  def __call__(self, item: tuple[int, bytes]) -> dict:
    index, record = item
    example = self.features.deserialize_example_np(record)
    example["index"] = np.int64(index)
    return example


@dataclasses.dataclass(frozen=True)
class _Sample:
  """Random temporal window, spatial crop and flip of one decoded example.

  Attributes:
    pixel_key: ``video`` or ``image`` in the stored example.
    modality: ``video`` or ``image`` in the output.
    frames: output frames (video modality).
    stride: stored frames per output frame (stored fps / target fps).
    resolution: output height and width.
    random_crop: random rather than centre spatial crop.
    flip: random horizontal flip with caption swap.
  """
  pixel_key: str
  modality: str
  frames: int
  stride: int
  resolution: int
  random_crop: bool
  flip: bool

  def __call__(self, example: dict, rng: np.random.Generator) -> dict:
    pixels = example[self.pixel_key]
    video = pixels[None] if self.pixel_key == "image" else pixels  # t h w c
    if self.modality == "image":
      video = video[int(rng.integers(video.shape[0]))][None]
    else:
      span = (self.frames - 1) * self.stride + 1
      start = int(rng.integers(video.shape[0] - span + 1))
      video = video[start:start + span:self.stride]
    h, w = video.shape[1:3]
    size = self.resolution
    if self.random_crop:
      top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    else:
      top, left = (h - size) // 2, (w - size) // 2
    video = video[:, top:top + size, left:left + size]
    text = example["caption"]
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    if self.flip and rng.random() < 0.5:
      video = video[:, :, ::-1]
      text = captions.swap_left_right(text)
    video = np.ascontiguousarray(video)
    out = {"caption": text, "index": example["index"]}
    out[self.modality] = video if self.modality == "video" else video[0]
    return out


class _ProcessRows(grain.MapDataset):
  """Rows ``[first_row, first_row + local_batch)`` of every global batch of the parent."""

  def __init__(self, parent: grain.MapDataset, global_batch_size: int, first_row: int,
               local_batch: int):
    super().__init__(parent)
    self._global_batch_size = global_batch_size
    self._first_row = first_row
    self._local_batch = local_batch
    self._length = len(parent) // global_batch_size * local_batch

  def __len__(self) -> int:
    return self._length

  def _parent_index(self, index: int) -> int:
    step, row = divmod(index, self._local_batch)
    return step * self._global_batch_size + self._first_row + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self._parent_index(index)]

  def __str__(self) -> str:
    return (f"_ProcessRows(rows {self._first_row}..{self._first_row + self._local_batch - 1} "
            f"of {self._global_batch_size})")


def process_first_row(sharding: jax.sharding.Sharding | None, global_batch_size: int,
                      process_index: int, process_count: int) -> int:
  """The first global-batch row this process feeds; its rows are contiguous.

  With a sharding, the rows are those the process's devices hold (what
  `jax.make_array_from_process_local_data` expects from it); without one, process i feeds
  block i.
  """
  local_batch = global_batch_size // process_count
  if sharding is None:
    return process_index * local_batch
  rows = set()
  for device, index in sharding.devices_indices_map((global_batch_size,)).items():
    if device.process_index == process_index:
      rows.update(range(*index[0].indices(global_batch_size)))
  first = min(rows) if rows else 0
  if rows != set(range(first, first + local_batch)):
    raise ValueError(f"process {process_index}'s devices hold global-batch rows "
                     f"{sorted(rows)[:8]}... of {global_batch_size}, not {local_batch} "
                     "contiguous rows; order the mesh's devices by process (mesh.shape with "
                     "the batch axes first)")
  return first


def _stack(examples: Sequence[dict]) -> dict:
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != "caption"}
  batch["caption"] = [e["caption"] for e in examples]
  return batch


@dataclasses.dataclass(frozen=True)
class _Finalize:
  """Tokenizes captions and places device keys on the mesh (main process, after prefetch)."""
  tokenizer: TokenizeFn | None
  sharding: jax.sharding.NamedSharding | None
  process_count: int

  def __call__(self, batch: dict) -> dict:
    if self.tokenizer is not None:
      ids, mask = self.tokenizer(batch["caption"])
      ids, mask = np.asarray(ids), np.asarray(mask)
      b = len(batch["caption"])
      if ids.ndim != 2 or ids.shape[0] != b or mask.shape != ids.shape:
        raise ValueError(f"tokenizer returned ids {ids.shape} and mask {mask.shape} for {b} "
                         "captions; expected both [b, L]")
      batch["text_ids"] = ids.astype(np.int32)
      batch["text_mask"] = mask.astype(bool)
    if self.sharding is not None:
      batch = global_batch.to_global(batch, self.sharding, self.process_count)
    return batch


def _sampler(config: ml_collections.ConfigDict, src: source_lib.Source) -> _Sample:
  """Checks the requested geometry against the stored one (fails at start-up, naming fields)."""
  if "video" in src.features:
    pixel_key = "video"
  elif "image" in src.features:
    pixel_key = "image"
  else:
    raise ValueError(f"dataset at {src.dataset_dir} has neither a 'video' nor an 'image' "
                     "feature")
  shape = src.features[pixel_key].shape
  stored_frames, (h, w) = (1, shape[:2]) if pixel_key == "image" else (shape[0], shape[1:3])
  if config.modality not in ("video", "image"):
    raise ValueError(f"data.modality must be 'video' or 'image', got {config.modality!r}")
  if config.modality == "video" and pixel_key == "image":
    raise ValueError(f"data.modality='video' but {config.dataset}/{config.builder_config} "
                     "stores single images")

  stored_fps = float(src.metadata["fps"])
  fps = config.fps or stored_fps
  stride = stored_fps / fps
  if config.modality == "image":
    stride, frames = 1, 1
  else:
    if stride < 1 or abs(stride - round(stride)) > 1e-6:
      raise ValueError(f"data.fps={config.fps} must divide the stored fps {stored_fps:g} "
                       "(frames are sampled with an integer stride)")
    stride = int(round(stride))
    frames = config.frames or (stored_frames - 1) // stride + 1
    span = (frames - 1) * stride + 1
    if span > stored_frames:
      raise ValueError(
          f"data.frames={frames} at data.fps={fps:g} needs {span} stored frames at "
          f"{stored_fps:g} fps, but clips have {stored_frames}")
  resolution = config.resolution or min(h, w)
  if resolution > min(h, w):
    raise ValueError(f"data.resolution={resolution} exceeds the stored frame size {h}x{w}")
  return _Sample(pixel_key=pixel_key, modality=config.modality, frames=frames, stride=stride,
                 resolution=resolution, random_crop=bool(config.random_crop),
                 flip=bool(config.flip))


def make_dataset(config: ml_collections.ConfigDict, *, mesh: jax.sharding.Mesh | None = None,
                 tokenizer: TokenizeFn | None = None, process_index: int | None = None,
                 process_count: int | None = None, split: str | None = None,
                 drop_remainder: bool = True) -> grain.IterDataset:
  """The pipeline as a grain `IterDataset` (see `make_train_iterator` for the arguments)."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, {process_count})")
  local_batch = global_batch.check_batch_size(config.global_batch_size, process_count, mesh,
                                              config.batch_axes)
  src = source_lib.open_source(config.data_dir, config.dataset, config.builder_config,
                               split or config.split, config.files)
  sampler = _sampler(config, src)

  sharding = None if mesh is None else global_batch.batch_sharding(mesh, config.batch_axes)

  ds = grain.MapDataset.source(src.records).map_with_index(
      _WithIndex(len(src.records)))
  ds = ds.seed(config.seed)
  if config.shuffle:
    ds = ds.shuffle()
  ds = ds.repeat(config.num_epochs)
  # Random ops draw from (seed, index in the global sequence): the same on every process.
  ds = ds.map(_Decode(src.features)).random_map(sampler)
  if process_count > 1:
    # A caller simulating other processes (tests) has no devices of theirs to ask.
    own_devices = sharding if process_count == jax.process_count() else None
    first_row = process_first_row(own_devices, config.global_batch_size, process_index,
                                  process_count)
    ds = _ProcessRows(ds, config.global_batch_size, first_row, local_batch)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                            prefetch_buffer_size=max(local_batch, 1) * 2))
  ds = ds.batch(local_batch, drop_remainder=drop_remainder, batch_fn=_stack)
  if config.worker_count > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.worker_count, per_worker_buffer_size=config.prefetch_batches))
  elif config.prefetch_batches > 0:
    ds = grain.experimental.ThreadPrefetchIterDataset(
        ds, prefetch_buffer_size=config.prefetch_batches)
  return ds.map(_Finalize(tokenizer, sharding, process_count))


def make_train_iterator(config: ml_collections.ConfigDict, *,
                        mesh: jax.sharding.Mesh | None = None,
                        tokenizer: TokenizeFn | None = None,
                        process_index: int | None = None, process_count: int | None = None,
                        split: str | None = None,
                        drop_remainder: bool = True) -> grain.DatasetIterator:
  """A checkpointable iterator of batches for this process.

  Args:
    config: the ``data`` config section (`stunet.data.config.data_config`).
    mesh: device mesh; device keys become global arrays sharded over ``config.batch_axes``.
      None yields numpy batches.
    tokenizer: optional ``texts -> (ids int32 [b, L], mask bool [b, L])`` hook.
    process_index / process_count: this process's shard (default: jax's): its contiguous
      rows of every global batch, so the global batches do not depend on the process count.
    split: overrides ``config.split`` (e.g. ``validation``).
    drop_remainder: drop a final partial batch when ``num_epochs`` is finite.

  Returns:
    A grain `DatasetIterator` with ``get_state``/``set_state``; checkpoint it with orbax via
    ``grain.checkpoint.CheckpointSave(it)`` / ``grain.checkpoint.CheckpointRestore(it)``.
  """
  return iter(make_dataset(config, mesh=mesh, tokenizer=tokenizer, process_index=process_index,
                           process_count=process_count, split=split,
                           drop_remainder=drop_remainder))
