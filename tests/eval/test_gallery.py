"""Tests for the per-sample files and the index.html gallery of a sampling run."""

import html.parser
import json
import os

import numpy as np
import pytest
from PIL import Image

from stunet.eval import gallery

PROMPTS = ['a cat <script>alert("x")</script> & a dog', "plain prompt", "l'été à Paris"]


class _Links(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.links, self.text = [], []

  def handle_starttag(self, tag, attrs):
    self.links += [v for k, v in attrs if k in ("src", "href")]

  def handle_data(self, data):
    self.text.append(data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("samples"))
  rng = np.random.default_rng(0)
  entries = []
  for i, prompt in enumerate(PROMPTS):
    video = rng.integers(0, 256, (6, 8, 10, 3), dtype=np.uint8)
    settings = {"steps": np.int64(16), "guidance": 5.0, "sampler": "ddim"}
    entries.append(gallery.write_sample(out, f"sample_{i}", video, prompt=prompt, seed=100 + i,
                                        settings=settings, fps=8))
  index = gallery.write_gallery(out, entries, title="run <1>")
  return out, entries, index


def test_sample_files_exist_and_decode(run_dir):
  out, entries, _ = run_dir
  e = entries[0]
  assert (e.mp4, e.gif, e.xt_slice) == ("sample_0.mp4", "sample_0.gif", "sample_0_xt.png")
  assert Image.open(os.path.join(out, e.xt_slice)).size == (10, 6)  # w x t
  assert Image.open(os.path.join(out, e.contact_sheet)).size == (6 * 10 + 5 * 2, 8)
  with Image.open(os.path.join(out, e.gif)) as im:
    assert im.n_frames == 6
  with open(os.path.join(out, e.metadata), encoding="utf-8") as f:
    record = json.load(f)
  assert record["prompt"] == PROMPTS[0] and record["seed"] == 100
  assert record["settings"] == {"steps": 16, "guidance": 5.0, "sampler": "ddim"}
  assert record["files"]["mp4"] == "sample_0.mp4"


def test_gallery_escapes_prompts_and_links_exist(run_dir):
  out, entries, index = run_dir
  assert index == os.path.join(out, "index.html")
  with open(index, encoding="utf-8") as f:
    page = f.read()
  assert "<script>" not in page
  assert "a cat &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; a dog" in page
  assert "<title>run &lt;1&gt;</title>" in page
  parser = _Links()
  parser.feed(page)
  text = "".join(parser.text)
  for prompt in PROMPTS:
    assert prompt in text  # the browser shows the prompt as written
  for e in entries:
    assert f"seed {e.seed}" in text
  assert len(parser.links) == 3 * 7  # per sample: mp4 source + gif fallback, 4 links, XT slice
  for link in parser.links:
    assert not os.path.isabs(link) and "://" not in link
    assert os.path.isfile(os.path.join(out, link)), link
  assert '<source src="sample_1.mp4" type="video/mp4"><img src="sample_1.gif"' in page


def test_gallery_and_sample_errors(run_dir, tmp_path):
  out, entries, _ = run_dir
  missing = gallery.SampleEntry(**{**entries[0].__dict__, "gif": "gone.gif"})
  with pytest.raises(ValueError, match="sample_0 gif file 'gone.gif' does not exist"):
    gallery.write_gallery(out, [missing])
  outside = gallery.SampleEntry(**{**entries[0].__dict__, "xt_slice": "../x.png"})
  with pytest.raises(ValueError, match="must be relative to the gallery folder"):
    gallery.write_gallery(out, [outside])
  with pytest.raises(ValueError, match="no samples"):
    gallery.write_gallery(out, [])
  video = np.zeros((2, 4, 4, 3), np.uint8)
  with pytest.raises(ValueError, match="sample name '../x'"):
    gallery.write_sample(str(tmp_path), "../x", video, prompt="p", seed=0, settings={}, fps=8)
  with pytest.raises(TypeError, match="not JSON serialisable"):
    gallery.write_sample(str(tmp_path), "x", video, prompt="p", seed=0,
                         settings={"f": object()}, fps=8)
  assert os.listdir(tmp_path) == []  # nothing written for a bad sample
