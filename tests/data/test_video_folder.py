"""`video_folder` on real files encoded here with PyAV (H.264 and MPEG-4, various fps/sizes)."""

import csv
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from stunet.data import config as data_config_lib
from stunet.data import pipeline
from stunet.data import video_decode
from stunet.data import video_folder

av = pytest.importorskip("av")


def _grey(index):
  return 10 + 5 * index


def _encode(path, codec, fps, width, height, num_frames):
  """Uniform frames whose grey level encodes the frame index (survives lossy coding)."""
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.bit_rate = 4_000_000  # near-lossless, so grey levels identify frames
    for i in range(num_frames):
      frame = np.full((height, width, 3), _grey(i), np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  (root / "sub").mkdir()
  _encode(root / "h264.mp4", "libx264", 24, 64, 48, 48)  # 2 s
  _encode(root / "sub" / "mpeg4.mp4", "mpeg4", 10, 40, 60, 25)  # 2.5 s
  _encode(root / "short.mp4", "mpeg4", 8, 32, 32, 4)  # 0.5 s: 4 frames at 8 fps
  _encode(root / "uncaptioned.mp4", "mpeg4", 8, 32, 32, 16)
  (root / "empty.mp4").write_bytes(b"")
  data = (root / "h264.mp4").read_bytes()
  (root / "truncated.mp4").write_bytes(data[:len(data) // 2])
  captions_csv = root.parent / f"{root.name}.csv"
  with open(captions_csv, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["videoid", "name"])  # WebVid's column names
    writer.writerow(["h264", "un chat qui saute 🐈 — très vite"])
    writer.writerow(["sub/mpeg4.mp4", "カメラが左に動く"])
    writer.writerow(["short", "too short"])
    writer.writerow(["empty.mp4", "empty"])
    writer.writerow(["truncated", "truncated"])
    writer.writerow(["not_on_disk", "missing"])
  return str(root), str(captions_csv)


@pytest.fixture(scope="module")
def built(videos, tmp_path_factory):
  video_dir, captions_csv = videos
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  config = video_folder.VideoFolderConfig(
      name="clips", video_dir=video_dir, captions_csv=captions_csv, resolution=16, frames=8,
      fps=8, clip_stride=4)
  builder = video_folder.VideoFolder(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder, data_dir


def test_decode_resamples_to_target_fps(videos):
  video_dir, _ = videos
  clip = video_decode.decode_at_fps(os.path.join(video_dir, "h264.mp4"), 8, 16)
  assert clip.shape == (16, 16, 16, 3) and clip.dtype == np.uint8  # 2 s at 8 fps
  # 24 -> 8 fps keeps every third source frame.
  np.testing.assert_allclose(clip[:, 8, 8, 0], [_grey(3 * k) for k in range(16)], atol=2)
  clip = video_decode.decode_at_fps(os.path.join(video_dir, "sub", "mpeg4.mp4"), 8, 16)
  assert clip.shape == (20, 16, 16, 3)  # 2.5 s at 8 fps
  # 10 -> 8 fps shows the last source frame at or before k / 8 s.
  np.testing.assert_allclose(clip[:, 8, 8, 0], [_grey(k * 10 // 8) for k in range(20)], atol=2)
  # Upsampling in time repeats frames.
  clip = video_decode.decode_at_fps(os.path.join(video_dir, "sub", "mpeg4.mp4"), 20, 16)
  assert clip.shape == (50, 16, 16, 3)
  np.testing.assert_allclose(clip[:, 8, 8, 0], [_grey(k // 2) for k in range(50)], atol=2)


def test_resize_shorter_side_and_centre_crop():
  image = np.zeros((60, 40, 3), np.uint8)  # h w c, portrait
  image[:10] = (255, 0, 0)  # cropped away: resized height 24, centre crop drops 4 rows
  image[25:35, 15:25] = (0, 255, 0)  # centre square survives
  out = video_decode.resize_and_centre_crop(Image.fromarray(image), 16)
  assert out.shape == (16, 16, 3)
  assert out[..., 0].max() < 30
  assert out[8, 8, 1] > 200


def test_builds_clips_with_report(built):
  builder, _ = built
  report = builder.build_report.as_dict()
  assert report["videos"] == 2
  # h264: 16 frames -> starts 0, 4, 8; mpeg4: 20 frames -> starts 0, 4, 8, 12.
  assert report["clips"] == 7
  assert report["skipped"] == {"empty": 1, "corrupt": 1, "unreadable": 0, "too_short": 1,
                               "no_caption": 1, "missing": 1}
  assert report["skipped_examples"]["empty"] == ["empty.mp4"]
  assert report["skipped_examples"]["corrupt"] == ["truncated.mp4"]
  assert report["skipped_examples"]["too_short"] == ["short.mp4"]
  assert report["skipped_examples"]["no_caption"] == ["uncaptioned.mp4"]
  assert report["skipped_examples"]["missing"] == ["not_on_disk"]
  assert "too_short: 1 (short.mp4)" in builder.build_report.summary()


def test_stored_clips_shapes_fps_and_unicode_captions(built):
  builder, _ = built
  reread = tfds.builder_from_directory(builder.data_dir)
  assert reread.info.metadata["fps"] == 8
  assert reread.info.metadata["build_report"]["clips"] == 7
  source = reread.as_data_source("train")
  examples = sorted((source[i] for i in range(len(source))),
                    key=lambda e: (e["source_file"], int(e["start_frame"])))
  assert [(e["source_file"].decode(), int(e["start_frame"])) for e in examples] == [
      ("h264.mp4", 0), ("h264.mp4", 4), ("h264.mp4", 8),
      ("sub/mpeg4.mp4", 0), ("sub/mpeg4.mp4", 4), ("sub/mpeg4.mp4", 8), ("sub/mpeg4.mp4", 12)]
  for e in examples:
    assert e["video"].shape == (8, 16, 16, 3)
  assert examples[0]["caption"].decode() == "un chat qui saute 🐈 — très vite"
  assert examples[3]["caption"].decode() == "カメラが左に動く"
  # The clip starting at output frame 4 of h264 shows source frames 12, 15, ... (24 -> 8 fps).
  np.testing.assert_allclose(examples[1]["video"][:, 8, 8, 0],
                             [_grey(3 * (4 + k)) for k in range(8)], atol=2)


def test_pipeline_reads_video_folder(built):
  _, data_dir = built
  config = data_config_lib.data_config("tiny")
  config.update(dataset="video_folder", builder_config="clips", data_dir=data_dir,
                global_batch_size=4, fps=4, frames=4, read_threads=1)
  batch = next(pipeline.make_train_iterator(config))
  assert batch["video"].shape == (4, 4, 16, 16, 3)
  assert all(isinstance(c, str) for c in batch["caption"])


def test_missing_video_folder_names_its_build_command(tmp_path):
  config = data_config_lib.data_config("tiny")
  config.update(dataset="video_folder", builder_config="clips", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="--dataset=video_folder --config=clips .*"
                                              "--video_dir=VIDEOS --captions_csv="):
    pipeline.make_train_iterator(config)


def test_csv_without_known_columns_is_named(tmp_path):
  path = tmp_path / "bad.csv"
  path.write_text("clip,label\na.mp4,x\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"no file column: header is \['clip', 'label'\]"):
    video_folder.read_captions(str(path))


def test_missing_pyav_names_the_extra(monkeypatch, tmp_path):
  path = tmp_path / "x.mp4"
  path.write_bytes(b"not empty")
  monkeypatch.setitem(sys.modules, "av", None)
  with pytest.raises(ImportError, match=r'pip install "stunet\[video\]"'):
    video_decode.decode_at_fps(str(path), 8, 16)


@pytest.mark.parametrize("make,reason,detail", [
    (lambda p: os.symlink(p.name, p), "unreadable", "Too many levels of symbolic links"),
    (lambda p: p.mkdir(), "unreadable", "is a directory"),
    (lambda p: None, "missing", "vanished before it was read"),
])
def test_decode_turns_file_system_errors_into_reasons(tmp_path, make, reason, detail):
  path = tmp_path / "x.mp4"
  make(path)
  with pytest.raises(video_decode.VideoDecodeError, match=detail) as e:
    video_decode.decode_at_fps(str(path), 8, 16)
  assert e.value.reason == reason


def _deny(monkeypatch, module, names):
  """`open` in `module` raises EACCES for these file names (root ignores chmod, so a real
  unreadable file cannot be made in every environment)."""
  import builtins  # pylint: disable=import-outside-toplevel
  import errno  # pylint: disable=import-outside-toplevel

  def fake_open(path, *args, **kwargs):
    if os.path.basename(str(path)) in names:
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return builtins.open(path, *args, **kwargs)
  monkeypatch.setattr(module, "open", fake_open, raising=False)


def test_hostile_folder_entries_are_skipped_and_counted(tmp_path, monkeypatch):
  """Loops, permission denied, a vanished file, directories named *.mp4, an unlistable
  subdirectory: each is a counted skip; the one good video still becomes clips."""
  root = tmp_path / "videos"
  (root / "sub").mkdir(parents=True)
  (root / "locked_dir").mkdir()
  _encode(root / "good.mp4", "mpeg4", 8, 32, 32, 8)
  os.symlink("loop.mp4", root / "loop.mp4")  # a link to itself: ELOOP
  os.symlink("pong.mp4", root / "ping.mp4")
  os.symlink("ping.mp4", root / "pong.mp4")
  (root / "folder.mp4").mkdir()
  (root / "sub" / "nested.mov").mkdir()
  for name in ("locked.mp4", "vanishing.mp4"):
    (root / name).write_bytes((root / "good.mp4").read_bytes())
  captions = tmp_path / "captions.csv"
  names = ["good", "loop", "ping", "pong", "folder.mp4", "sub/nested.mov", "locked", "vanishing"]
  captions.write_text("file,caption\n" + "".join(f"{n},clip {n}\n" for n in names),
                      encoding="utf-8")
  _deny(monkeypatch, video_decode, {"locked.mp4"})
  real_scandir = os.scandir

  def scandir(path="."):
    if os.path.basename(str(path)) == "locked_dir":
      raise PermissionError(13, "Permission denied", str(path))
    return real_scandir(path)
  monkeypatch.setattr(os, "scandir", scandir)

  config = video_folder.VideoFolderConfig(
      name="hostile", video_dir=str(root), captions_csv=str(captions), resolution=16,
      frames=4, fps=8, clip_stride=4)
  builder = video_folder.VideoFolder(config=config, data_dir=str(tmp_path / "data"))
  splits = builder._split_generators(None)  # pylint: disable=protected-access
  (root / "vanishing.mp4").unlink()  # after the scan listed it, before it is read
  keys = [key for key, _ in splits["train"]]
  assert keys == ["good.mp4:0", "good.mp4:4"]
  report = builder.build_report.as_dict()
  assert report["videos"] == 1 and report["clips"] == 2
  assert report["skipped"] == {"empty": 0, "corrupt": 0, "unreadable": 7, "too_short": 0,
                               "no_caption": 0, "missing": 1}
  assert report["skipped_examples"]["missing"] == ["vanishing.mp4"]
  # The scan's skips first, then the reads' in file order; the report lists the first five.
  assert report["skipped_examples"]["unreadable"] == [
      "locked_dir", "folder.mp4", "sub/nested.mov", "locked.mp4", "loop.mp4"]
