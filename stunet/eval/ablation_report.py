"""The ablation sweep's record and what is written from it (`stunet.apps.ablation_sweep`).

The record is ``analysis.jsonl`` in the sweep's workdir: one JSON row per variant and kind
('analysis' per clip length T, 'quality' once per variant), appended as each finishes, so an
interrupted sweep resumes (a row cut mid-write is dropped and recomputed; a later row of the
same key wins). `write_outputs` turns it into ``results.csv``, ``results.md`` and the plots
``flops_vs_frames.png``, ``memory_vs_frames.png`` and ``quality.png``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

import numpy as np

ANALYSIS_NAME = "analysis.jsonl"
QUALITY_KEYS = ("colour", "shape", "motion", "speed", "count")


def read_rows(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          pass  # a line cut by an interrupted write: that row is recomputed
  return rows


def append_row(path: str, row: dict) -> None:
  # After an interrupted write the file ends mid-line: start the new row on its own line.
  cut = os.path.exists(path) and os.path.getsize(path) > 0 and not _ends_with_newline(path)
  with open(path, "a", encoding="utf-8") as f:
    f.write(("\n" if cut else "") + json.dumps(row, sort_keys=True) + "\n")


def _ends_with_newline(path: str) -> bool:
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def row_key(row: dict) -> tuple:
  return row["variant"], row["kind"], row.get("frames")


def quality_numbers(summary: dict) -> dict:
  """The quality columns of a metrics summary (`metrics.evaluate_clips` without per_clip)."""
  return {"num_clips": summary["num_clips"],
          **{f"acc_{k}": summary["accuracy"][k] for k in QUALITY_KEYS},
          "all_correct": summary["all_correct"],
          "presence": summary["consistency"]["presence"],
          "smooth": summary["consistency"]["smooth"]}


FAST_COLUMNS = ("num_clips",) + tuple(f"acc_{k}" for k in QUALITY_KEYS) + (
    "all_correct", "presence", "smooth")


def _fmt(value: Any, kind: str = "") -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  if kind == "bytes":
    return f"{value / 2**20:.1f}"
  if kind == "flops":
    return f"{value / 1e9:.2f}"
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def write_outputs(rows: list[dict], workdir: str, variants: list[str]) -> dict[str, str]:
  """``results.csv``, ``results.md`` and the plots from the recorded rows; returns the paths."""
  latest = {}
  for r in rows:
    latest[row_key(r)] = r  # a later row (a recomputation) wins
  analysis = [r for k, r in latest.items() if k[1] == "analysis"]
  quality = {r["variant"]: r for k, r in latest.items() if k[1] == "quality"}
  order = {v: i for i, v in enumerate(variants)}
  analysis.sort(key=lambda r: (order.get(r["variant"], len(order)), r["frames"]))

  paths = {"csv": os.path.join(workdir, "results.csv"),
           "markdown": os.path.join(workdir, "results.md")}
  columns = ["variant", "frames", "batch", "params_total", "params_temporal",
             "train_step_flops", "peak_memory_bytes", "step_seconds", "acc_colour", "acc_shape",
             "acc_motion", "acc_speed", "acc_count",
             "all_correct", "presence"] + [f"fast_{k}" for k in FAST_COLUMNS] + [
                 "models", "error"]
  with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in analysis:
      q = quality.get(r["variant"], {})
      writer.writerow({**{k: q.get(k, "") for k in columns}, **r,
                       "error": r.get("error") or q.get("error", "")})

  lines = ["# Temporal down-sampling ablation", "",
           "Video train step (forward + backward + update) compiled by XLA on one CPU device; "
           "FLOPs and peak memory from XLA's cost and memory analysis; seconds / step measured "
           "on this machine (random weights, median).", "",
           "| variant | T | batch | params (total / temporal) | train-step GFLOPs | peak MiB | "
           "seconds / step | note |", "|---|---|---|---|---|---|---|---|"]
  for r in analysis:
    if r.get("error"):
      lines.append(f"| {r['variant']} | {r['frames']} | | | | | | {r['error']} |")
      continue
    note = (f"sum of the keyframe model (T/k = {r['keyframe_frames']} frames) and the TSR "
            f"model (T = {r['frames']})" if r.get("models") == "keyframes+tsr" else "")
    lines.append(f"| {r['variant']} | {r['frames']} | {r['batch']} | {r['params_total']:,} / "
                 f"{r['params_temporal']:,} | {_fmt(r['train_step_flops'], 'flops')} | "
                 f"{_fmt(r['peak_memory_bytes'], 'bytes')} | {_fmt(r.get('step_seconds'))} | "
                 f"{note} |")
  if quality:
    lines += ["", "Quality after the same video-stage budget (test split, held-out "
              "combinations; analytic detector):", "",
              "| variant | steps | clips | colour | shape | motion | speed | count | "
              "all-correct | presence |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
      if v in quality:
        q = quality[v]
        if q.get("error"):
          lines.append(f"| {v} | | | {q['error']} | | | | | | |")
          continue
        lines.append(f"| {v} | {q['train_steps']} | {q['num_clips']} | " + " | ".join(
            _fmt(q.get(k)) for k in ("acc_colour", "acc_shape", "acc_motion", "acc_speed",
                                     "acc_count", "all_correct", "presence")) + " |")
    lines += ["", "The same, on the fast-motion captions only (a quick or a bouncing object: "
              "the motion keyframes every k frames alias). A keyframes_tsr variant's steps are "
              "split between its keyframe and TSR models.", "",
              "| variant | clips | colour | shape | motion | speed | count | all-correct | "
              "presence | smooth |", "|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
      q = quality.get(v)
      if q is None or q.get("error"):
        continue
      lines.append(f"| {v} | {_fmt(q.get('fast_num_clips', 0))} | " + " | ".join(
          _fmt(q.get(f"fast_{k}")) for k in FAST_COLUMNS[1:]) + " |")
  with open(paths["markdown"], "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  paths.update(_plots(analysis, quality, variants, workdir))
  return paths


def _plots(analysis: list[dict], quality: dict, variants: list[str], workdir: str
           ) -> dict[str, str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  out = {}
  for key, label, scale, name in (("train_step_flops", "train-step GFLOPs", 1e9, "flops"),
                                  ("peak_memory_bytes", "peak memory (MiB)", 2**20, "memory")):
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in variants:
      points = [(r["frames"], r[key] / scale) for r in analysis
                if r["variant"] == v and not r.get("error")]
      if points:
        xs, ys = zip(*points)
        summed = any(r.get("models") for r in analysis if r["variant"] == v)
        ax.plot(xs, ys, marker="o", label=f"{v} (both models)" if summed else v)
    ax.set_xlabel("frames T")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs T")
    if ax.lines:  # a training-only sweep has no analysis rows to plot
      ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = os.path.join(workdir, f"{name}_vs_frames.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    out[f"{name}_plot"] = path
  if quality:
    names = [v for v in variants if v in quality and not quality[v].get("error")]
    keys = ("acc_colour", "acc_shape", "acc_motion", "acc_speed", "all_correct",
            "fast_acc_motion", "fast_acc_speed", "fast_all_correct")
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(names))
    for i, v in enumerate(names):
      values = [quality[v].get(k) for k in keys]
      values = [np.nan if x is None else x for x in values]
      ax.bar(np.arange(len(keys)) + i * width, values, width, label=v)
    ax.set_xticks(np.arange(len(keys)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([k.replace("acc_", "").replace("fast_", "fast: ") for k in keys],
                       fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction correct (test split)")
    ax.legend(fontsize=8)
    path = os.path.join(workdir, "quality.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    out["quality_plot"] = path
  return out
