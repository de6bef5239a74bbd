"""The grain pipeline: determinism, sharding, exact resume, flips, sampling, sharding, errors."""

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from stunet.data import captions
from stunet.data import config as data_config_lib
from stunet.data import global_batch
from stunet.data import pipeline
from stunet.data import shapes_video


def _config(data_dir, **overrides):
  c = data_config_lib.data_config("tiny")
  c.data_dir = data_dir
  c.read_threads = 1
  for key, value in overrides.items():
    setattr(c, key, value)
  return c


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_same(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys()
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["video"], b["video"])
    assert a["caption"] == b["caption"]


@pytest.fixture(scope="module")
def stored(data_dir):
  """tiny/train decoded, by record index."""
  builder = tfds.builder_from_directory(
      f"{data_dir}/shapes_video/tiny/{shapes_video.ShapesVideo.VERSION}")
  source = builder.as_data_source("train")
  return [source[i] for i in range(len(source))]


def test_batch_structure_and_contents(data_dir, stored):
  batch = next(pipeline.make_train_iterator(_config(data_dir)))
  assert batch["video"].shape == (8, 8, 16, 16, 3) and batch["video"].dtype == np.uint8
  assert batch["index"].dtype == np.int64 and len(batch["caption"]) == 8
  for i, index in enumerate(batch["index"]):
    np.testing.assert_array_equal(batch["video"][i], stored[index]["video"])
    assert batch["caption"][i] == stored[index]["caption"].decode()


def test_same_seed_same_batches_other_seed_other_order(data_dir):
  a = _take(pipeline.make_train_iterator(_config(data_dir)), 8)
  b = _take(pipeline.make_train_iterator(_config(data_dir)), 8)
  _assert_same(a, b)
  c = _take(pipeline.make_train_iterator(_config(data_dir, seed=1)), 8)
  assert not np.array_equal(np.concatenate([x["index"] for x in a]),
                            np.concatenate([x["index"] for x in c]))


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_shards_are_disjoint_and_cover_the_split(data_dir, process_count):
  shards = []
  for process_index in range(process_count):
    it = pipeline.make_train_iterator(
        _config(data_dir, num_epochs=1, global_batch_size=4 * process_count),
        process_index=process_index, process_count=process_count, drop_remainder=False)
    shard = np.concatenate([batch["index"] for batch in it])
    assert len(shard) == len(set(shard.tolist())) == 48 // process_count
    shards.append(set(shard.tolist()))
  assert set().union(*shards) == set(range(48))
  assert sum(len(s) for s in shards) == 48


@pytest.mark.parametrize("process_count", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(data_dir, process_count):
  # Random crops and flips too: every process draws them from the same global sequence.
  config = _config(data_dir, random_crop=True, resolution=12, flip=True)
  reference = _take(pipeline.make_train_iterator(config), 8)  # crosses an epoch boundary
  shards = [_take(pipeline.make_train_iterator(config, process_index=i,
                                               process_count=process_count), 8)
            for i in range(process_count)]
  for step, batch in enumerate(reference):
    parts = [shard[step] for shard in shards]
    assert all(len(p["index"]) == 8 // process_count for p in parts)
    index = np.concatenate([p["index"] for p in parts])
    assert len(set(index.tolist())) == len(index)  # the processes read disjoint examples
    np.testing.assert_array_equal(index, batch["index"])
    np.testing.assert_array_equal(np.concatenate([p["video"] for p in parts]), batch["video"])
    assert sum((p["caption"] for p in parts), []) == batch["caption"]


def test_resume_of_one_process_shard(data_dir):
  config = _config(data_dir, random_crop=True, resolution=12)
  reference = _take(pipeline.make_train_iterator(config, process_index=1, process_count=2), 9)
  it = pipeline.make_train_iterator(config, process_index=1, process_count=2)
  _take(it, 5)
  resumed = pipeline.make_train_iterator(config, process_index=1, process_count=2)
  resumed.set_state(it.get_state())
  _assert_same(_take(resumed, 4), reference[5:])


def test_process_first_row_from_the_sharding():
  mesh = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  # All devices here belong to process 0, which therefore holds all 8 rows.
  assert pipeline.process_first_row(sharding, 8, 0, 1) == 0
  assert pipeline.process_first_row(None, 8, 3, 4) == 6
  with pytest.raises(ValueError, match="process 1's devices hold global-batch rows"):
    pipeline.process_first_row(sharding, 8, 1, 2)


def test_epochs_reshuffle(data_dir):
  first, second = [np.concatenate([b["index"] for b in _take(it, 6)]) for it in
                   [pipeline.make_train_iterator(_config(data_dir))] * 2]
  assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(48))
  assert not np.array_equal(first, second)


def test_resume_with_get_state_set_state(data_dir):
  config = _config(data_dir, random_crop=True, resolution=12, flip=True)
  reference = _take(pipeline.make_train_iterator(config), 10)
  it = pipeline.make_train_iterator(config)
  _take(it, 4)  # crosses no epoch boundary; the second half does (48 / 8 = 6 per epoch)
  state = it.get_state()
  resumed = pipeline.make_train_iterator(config)
  resumed.set_state(state)
  _assert_same(_take(resumed, 6), reference[4:])


def test_resume_through_orbax(data_dir, tmp_path):
  config = _config(data_dir)
  reference = _take(pipeline.make_train_iterator(config), 7)
  it = pipeline.make_train_iterator(config)
  _take(it, 3)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
  _take(it, 2)  # moving on must not change what was saved
  resumed = pipeline.make_train_iterator(config)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.restore(3, args=ocp.args.Composite(
        data_iter=grain.checkpoint.CheckpointRestore(resumed)))
  _assert_same(_take(resumed, 4), reference[3:])


def test_flip_off_by_default_and_swaps_captions_when_on(data_dir, stored):
  plain = _take(pipeline.make_train_iterator(_config(data_dir)), 6)
  for batch in plain:
    for i, index in enumerate(batch["index"]):
      np.testing.assert_array_equal(batch["video"][i], stored[index]["video"])
  flipped = _take(pipeline.make_train_iterator(_config(data_dir, flip=True)), 6)
  n_flipped = n_left_right = 0
  for a, b in zip(plain, flipped):
    np.testing.assert_array_equal(a["index"], b["index"])
    for i in range(len(a["index"])):
      if np.array_equal(b["video"][i], a["video"][i]):
        assert b["caption"][i] == a["caption"][i]
      else:
        np.testing.assert_array_equal(b["video"][i], a["video"][i][:, :, ::-1])
        assert b["caption"][i] == captions.swap_left_right(a["caption"][i])
        n_flipped += 1
        n_left_right += ("left" in a["caption"][i]) or ("right" in a["caption"][i])
        if "left" in a["caption"][i] and "right" not in a["caption"][i]:
          assert "right" in b["caption"][i] and "left" not in b["caption"][i]
  assert 10 < n_flipped < 38 and n_left_right > 0


def test_frame_stride_reaches_target_fps(data_dir, stored):
  config = _config(data_dir, fps=8, frames=3)  # stored 16 fps: every 2nd frame
  batch = next(pipeline.make_train_iterator(config))
  assert batch["video"].shape == (8, 3, 16, 16, 3)
  starts = set()
  for i, index in enumerate(batch["index"]):
    clip = stored[index]["video"]
    matches = [s for s in range(4) if np.array_equal(batch["video"][i], clip[s:s + 5:2])]
    assert matches
    starts.update(matches)
  assert len(starts) > 1  # the temporal crop is random


def test_random_spatial_crop(data_dir, stored):
  batch = next(pipeline.make_train_iterator(_config(data_dir, resolution=10, random_crop=True)))
  offsets = set()
  for i, index in enumerate(batch["index"]):
    clip = stored[index]["video"]
    found = [(y, x) for y in range(7) for x in range(7)
             if np.array_equal(batch["video"][i], clip[:, y:y + 10, x:x + 10])]
    assert found
    offsets.add(found[0])
  assert len(offsets) > 1
  centre = next(pipeline.make_train_iterator(_config(data_dir, resolution=10)))
  np.testing.assert_array_equal(centre["video"][0],
                                stored[centre["index"][0]]["video"][:, 3:13, 3:13])


def test_image_modality(data_dir):
  config = _config(data_dir, builder_config="image_tiny", modality="image")
  batch = next(pipeline.make_train_iterator(config))
  assert batch["image"].shape == (8, 16, 16, 3) and "video" not in batch
  assert all("moving" not in c for c in batch["caption"])
  # A random frame of a video dataset, for the T2I stage on video data.
  batch = next(pipeline.make_train_iterator(_config(data_dir, modality="image")))
  assert batch["image"].shape == (8, 16, 16, 3)


def test_tokenizer_hook_and_global_arrays(data_dir):
  seen = []

  def tokenizer(texts):
    seen.append(list(texts))
    ids = np.array([[len(t), 1, 2] for t in texts], np.int64)
    return ids, ids > 0

  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  batch = next(pipeline.make_train_iterator(_config(data_dir), mesh=mesh, tokenizer=tokenizer))
  assert seen[0] == batch["caption"]
  assert isinstance(batch["video"], jax.Array) and batch["video"].shape == (8, 8, 16, 16, 3)
  assert batch["video"].sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
  assert len(batch["video"].sharding.device_set) == 8
  assert batch["text_ids"].dtype == np.int32 and batch["text_mask"].dtype == bool
  np.testing.assert_array_equal(np.asarray(batch["text_ids"])[:, 0],
                                [len(c) for c in batch["caption"]])
  assert isinstance(batch["caption"], list) and isinstance(batch["index"], np.ndarray)


def test_bad_tokenizer_output_is_reported(data_dir):
  def tokenizer(texts):
    return np.zeros((len(texts) + 1, 4), np.int32), np.ones((len(texts) + 1, 4), bool)

  with pytest.raises(ValueError, match="tokenizer returned ids"):
    next(pipeline.make_train_iterator(_config(data_dir), tokenizer=tokenizer))


def test_missing_data_dir_names_the_build_command(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    pipeline.make_train_iterator(_config(str(tmp_path / "nowhere")))
  assert ("python -m experiments.build_data --dataset=shapes_video --config=tiny "
          f"--data_dir={tmp_path / 'nowhere'}") in str(error.value)


def test_batch_not_divisible_by_data_parallel_size_names_both(data_dir):
  mesh = jax.make_mesh((4, 2), ("data", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  with pytest.raises(ValueError, match=r"global_batch_size=6 .* data-parallel size 4"):
    pipeline.make_train_iterator(_config(data_dir, global_batch_size=6), mesh=mesh)
  with pytest.raises(ValueError, match=r"global_batch_size=6 .* process count 4"):
    pipeline.make_train_iterator(_config(data_dir, global_batch_size=6), process_count=4,
                                 process_index=0)


@pytest.mark.parametrize("overrides, message", [
    ({"fps": 5}, r"data.fps=5 must divide the stored fps 16"),
    ({"frames": 9}, r"data.frames=9 .* clips have 8"),
    ({"fps": 8, "frames": 5}, r"needs 9 stored frames"),
    ({"resolution": 20}, r"data.resolution=20 exceeds the stored frame size 16x16"),
    ({"modality": "audio"}, r"data.modality must be 'video' or 'image'"),
    ({"split": "dev"}, r"split 'dev' not in shapes_video/tiny"),
])
def test_bad_geometry_is_named(data_dir, overrides, message):
  with pytest.raises(ValueError, match=message):
    pipeline.make_train_iterator(_config(data_dir, **overrides))


def test_reads_array_record_files_directly(data_dir):
  files = (f"{data_dir}/shapes_video/tiny/{shapes_video.ShapesVideo.VERSION}/"
           "shapes_video-validation.array_record-*")
  batch = next(pipeline.make_train_iterator(_config(data_dir, files=files, num_epochs=1,
                                                    global_batch_size=16)))
  assert sorted(batch["index"].tolist()) == list(range(16))


def test_mesh_axes_outside_the_batch_must_stay_within_a_process():
  mesh = jax.make_mesh((2, 4), ("fsdp", "context"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  # 2 "hosts" of 4 devices: host = the device's row of the mesh keeps context within a host.
  row_of = {d: i for i, row in enumerate(mesh.devices) for d in row}
  global_batch.check_rows_per_process(mesh, ("data", "fsdp"), process_of=row_of.get)
  # Host = the device's column: each batch row block is held by 4 processes.
  col_of = {d: j for row in mesh.devices for j, d in enumerate(row)}
  with pytest.raises(ValueError, match=r"batch row block 0 is held by devices of processes "
                                       r"\[0, 1, 2, 3\]: the mesh axes \['context'\] .*span "
                                       r"processes"):
    global_batch.check_rows_per_process(mesh, ("data", "fsdp"), process_of=col_of.get)
  # Listing the axis as a batch axis splits the batch over it instead: fine.
  global_batch.check_rows_per_process(mesh, ("fsdp", "context"), process_of=col_of.get)
