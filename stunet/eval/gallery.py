"""The files of a sampling run and its ``index.html`` gallery (SPEC §5 outputs).

`write_sample` stores one generated clip as mp4 (when PyAV is installed) and GIF, a PNG
contact sheet, the PNG XT slice and a JSON record of prompt, seed and settings.
`write_gallery` writes ``index.html`` beside them: every sample's video (mp4 with the GIF as
fallback), prompt, seed, settings and XT slice. Every link is relative to the gallery folder, so
the folder can be copied anywhere and opened from disk with no server.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import urllib.parse
from typing import Any, Mapping, Sequence

import numpy as np

from stunet.data import video_write
from stunet.data import contact_sheet as contact_sheet_lib
from stunet.eval import xt_slice as xt_slice_lib

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class SampleEntry:
  """One sample of a run; file fields are paths relative to the gallery folder."""

  name: str
  prompt: str
  seed: int
  settings: Mapping[str, Any]
  gif: str
  xt_slice: str
  contact_sheet: str
  metadata: str
  mp4: str | None = None


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"setting value {value!r} of type {type(value).__name__} is not JSON "
                  "serialisable")


def write_sample(out_dir: str, name: str, video, *, prompt: str, seed: int,
                 settings: Mapping[str, Any], fps: float,
                 xt_rows: int | Sequence[int] | None = None,
                 sheet_frames: int = 8) -> SampleEntry:
  """Writes ``<name>.mp4``, ``.gif``, ``_sheet.png``, ``_xt.png`` and ``.json`` in ``out_dir``.

  Args:
    out_dir: the gallery folder (created if missing).
    name: file stem, letters, digits, ``_ . -`` only.
    video: uint8 ``[t h w 3]`` (see `stunet.data.video_write.to_uint8`).
    prompt, seed, settings: recorded in the JSON and shown in the gallery; ``settings`` must
      be JSON-serialisable (numpy scalars and arrays are converted).
    fps: playback rate of the mp4 and GIF.
    xt_rows: image rows of the XT slice (default: the middle row).
    sheet_frames: frames per contact-sheet row.
  """
  if not _SAFE_NAME.match(name):
    raise ValueError(f"sample name {name!r} must start with a letter or digit and contain only "
                     "letters, digits, '_', '.', '-'")
  video = video_write.check_video(video)
  record = {"name": name, "prompt": prompt, "seed": int(seed), "settings": dict(settings)}
  json.dumps(record, default=_jsonable)  # fail on bad settings before writing any file
  os.makedirs(out_dir, exist_ok=True)
  files = dict(gif=f"{name}.gif", xt_slice=f"{name}_xt.png", contact_sheet=f"{name}_sheet.png",
               metadata=f"{name}.json")
  video_write.write_gif(os.path.join(out_dir, files["gif"]), video, fps)
  try:
    video_write.write_mp4(os.path.join(out_dir, f"{name}.mp4"), video, fps)
    files["mp4"] = f"{name}.mp4"
  except ImportError as e:
    video_write.warn_gif_fallback(e)
  video_write.write_png(os.path.join(out_dir, files["xt_slice"]),
                        xt_slice_lib.xt_slice(video, xt_rows))
  contact_sheet_lib.write_contact_sheet(os.path.join(out_dir, files["contact_sheet"]), video,
                                        sheet_frames)
  record["files"] = files
  with open(os.path.join(out_dir, files["metadata"]), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2, sort_keys=True, default=_jsonable)
  return SampleEntry(name=name, prompt=prompt, seed=int(seed), settings=dict(settings),
                     **files)


def _href(path: str) -> str:
  return html.escape(urllib.parse.quote(path), quote=True)


def _check_link(out_dir: str, path: str, what: str) -> None:
  if os.path.isabs(path) or os.path.normpath(path).startswith(".."):
    raise ValueError(f"{what} path {path!r} must be relative to the gallery folder and inside it")
  if not os.path.isfile(os.path.join(out_dir, path)):
    raise ValueError(f"{what} file {path!r} does not exist in {out_dir!r}")


def _entry_html(entry: SampleEntry) -> str:
  gif = _href(entry.gif)
  alt = html.escape(entry.prompt, quote=True)
  if entry.mp4:
    media = (f'<video controls autoplay loop muted playsinline>'
             f'<source src="{_href(entry.mp4)}" type="video/mp4">'
             f'<img src="{gif}" alt="{alt}"></video>')
    links = f'<a href="{_href(entry.mp4)}">mp4</a> · <a href="{gif}">gif</a>'
  else:
    media = f'<img src="{gif}" alt="{alt}">'
    links = f'<a href="{gif}">gif</a>'
  settings = "".join(
      f"<tr><th>{html.escape(str(k))}</th><td>"
      f"{html.escape(json.dumps(v, default=_jsonable))}</td></tr>"
      for k, v in sorted(entry.settings.items()))
  return f"""<div class="sample" id="{html.escape(entry.name, quote=True)}">
<h2>{html.escape(entry.name)}</h2>
{media}
<p class="prompt">{html.escape(entry.prompt)}</p>
<p>seed {entry.seed} · {links} · <a href="{_href(entry.contact_sheet)}">frames</a>
 · <a href="{_href(entry.metadata)}">json</a></p>
<figure><img class="xt" src="{_href(entry.xt_slice)}" alt="XT slice of {alt}">
<figcaption>XT slice (time runs down)</figcaption></figure>
<table>{settings}</table>
</div>"""


_STYLE = """body{font-family:sans-serif;margin:1em}
.grid{display:flex;flex-wrap:wrap;gap:1.5em}
.sample{width:288px}
video,img{width:256px;image-rendering:pixelated}
.prompt{font-weight:bold}
table{font-size:small;border-collapse:collapse}th{text-align:left;padding-right:1em}"""


def write_gallery(out_dir: str, entries: Sequence[SampleEntry], *,
                  title: str = "stunet samples") -> str:
  """Writes ``out_dir/index.html`` for ``entries`` and returns its path.

  Raises:
    ValueError: no entries, or a linked file that is missing or outside ``out_dir``.
  """
  if not entries:
    raise ValueError("no samples to put in the gallery")
  for e in entries:
    for what in ("mp4", "gif", "xt_slice", "contact_sheet", "metadata"):
      path = getattr(e, what)
      if path is not None:
        _check_link(out_dir, path, f"{e.name} {what}")
  body = "\n".join(_entry_html(e) for e in entries)
  page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="grid">
{body}
</div>
</body>
</html>
"""
  path = os.path.join(out_dir, "index.html")
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
