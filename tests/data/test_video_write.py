"""Tests for writing mp4/GIF/PNG: files decode back with the right frames, sizes and pixels."""

import warnings

import numpy as np
import pytest
from PIL import Image, ImageSequence

from stunet.data import video_write


def _video(t=9, h=16, w=24, seed=0):
  # Smooth, moving content: what a codec reproduces closely, unlike random pixels.
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  frames = []
  for i in range(t):
    base = 128 + 100 * np.sin((xx + 2 * i) / 4.0) * np.cos(yy / 5.0)
    frames.append(np.stack([base, 255 - base, np.full_like(base, 40 * (i % 5))], -1))
  return np.clip(np.stack(frames) + rng.normal(0, 1, (t, h, w, 3)), 0, 255).astype(np.uint8)


def _decode_mp4(path):
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    stream = container.streams.video[0]
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return np.stack(frames), float(stream.average_rate), stream.codec_context.name


def test_to_uint8_maps_range_and_clips():
  x = np.array([-1.5, -1.0, 0.0, 0.5, 1.0, 2.0], np.float32)
  np.testing.assert_array_equal(video_write.to_uint8(x), [0, 0, 128, 191, 255, 255])
  with pytest.raises(ValueError, match="NaN or infinite"):
    video_write.to_uint8(np.array([0.0, np.nan]))


def test_mp4_decodes_back(tmp_path):
  video = _video()
  path = video_write.write_mp4(str(tmp_path / "a.mp4"), video, fps=16)
  frames, fps, codec = _decode_mp4(path)
  assert frames.shape == video.shape
  assert fps == 16 and codec == "h264"
  # Near-lossless crf: a few grey levels of error on average (chroma subsampling included).
  assert np.abs(frames.astype(int) - video).mean() < 6


def test_mp4_pads_odd_sizes_with_a_warning(tmp_path):
  video = _video(t=3, h=15, w=21)
  with pytest.warns(UserWarning, match="padding 15x21 to 16x22"):
    path = video_write.write_mp4(str(tmp_path / "odd.mp4"), video, fps=8)
  frames, _, _ = _decode_mp4(path)
  assert frames.shape == (3, 16, 22, 3)


def test_gif_decodes_back_exactly_for_few_colours(tmp_path):
  # At most 256 colours in the whole clip: the GIF palette holds them exactly.
  rng = np.random.default_rng(1)
  palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
  video = palette[rng.integers(0, 16, (7, 10, 12))]
  path = video_write.write_gif(str(tmp_path / "a.gif"), video, fps=20)
  with Image.open(path) as im:
    frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    assert im.info["duration"] == 50 and im.info["loop"] == 0
  np.testing.assert_array_equal(frames, video)


def test_png_round_trip(tmp_path):
  image = _video(t=1)[0]
  path = video_write.write_png(str(tmp_path / "sub" / "a.png"), image)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


@pytest.mark.parametrize("video,match", [
    (np.zeros((4, 8, 8, 3), np.float32), "must be uint8"),
    (np.zeros((8, 8, 3), np.uint8), r"must be \[t, h, w, 3\]"),
    (np.zeros((4, 8, 8, 4), np.uint8), r"must be \[t, h, w, 3\]"),
    (np.zeros((0, 8, 8, 3), np.uint8), r"must be \[t, h, w, 3\]"),
])
def test_bad_videos_are_named(tmp_path, video, match):
  for write in (video_write.write_mp4, video_write.write_gif):
    with pytest.raises(ValueError, match=match):
      write(str(tmp_path / "x"), video, 8)


def test_bad_fps_and_missing_encoder(tmp_path):
  with pytest.raises(ValueError, match="fps must be > 0"):
    video_write.write_gif(str(tmp_path / "x.gif"), _video(t=2), 0)
  with pytest.raises(ValueError, match="no 'nonexistent' encoder"):
    video_write.write_mp4(str(tmp_path / "x.mp4"), _video(t=2), 8, codec="nonexistent")


def test_gif_fallback_is_warned_once_per_process(monkeypatch, tmp_path):
  """Without PyAV a run writes every clip as GIF; it says so once, not once per clip."""
  from stunet.eval import gallery  # pylint: disable=g-import-not-at-top

  def no_av():
    raise ImportError('Writing mp4 files needs PyAV: pip install "stunet[video]"')

  monkeypatch.setattr(video_write, "import_av", no_av)
  monkeypatch.setattr(video_write, "_GIF_FALLBACK_REASONS", set())
  video = np.zeros((2, 4, 4, 3), np.uint8)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(3):
      entry = gallery.write_sample(str(tmp_path), f"clip{i}", video, prompt="p", seed=i,
                                   settings={}, fps=4)
      assert entry.mp4 is None and (tmp_path / f"clip{i}.gif").exists()
  messages = [str(w.message) for w in caught]
  assert len(messages) == 1
  assert "stunet[video]" in messages[0] and "GIF" in messages[0]
