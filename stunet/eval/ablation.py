"""The temporal down-sampling ablation (SPEC §1, §6-§7; `experiments/ablate.py`).

The paper argues for down-sampling in time inside the U-Net but gives no quantitative ablation
of it (SPEC §6). A sweep is a config (`experiments/configs/ablation.py`): a base experiment
config and a list of variants, each a name and `{dotted.field: value}` overrides of it. Per
variant the sweep records, in ``<sweep workdir>``:

* ``analysis.jsonl``: per variant and clip length T, the parameter count and XLA's forward +
  backward FLOPs and peak memory of the compiled video train step (on the local CPU device,
  batch ``analysis_batch``), and the measured time of that compiled step (``step_time_repeats``
  runs on random weights; 0 = compile only);
* with ``train_steps > 0``: every variant's video stage trained for the same number of steps
  from one shared T2I checkpoint (same data, batch and seed), then `run_evaluation` on the test
  split, in ``<sweep workdir>/runs/<variant>/``;
* ``results.csv`` / ``results.md`` (analysis rows and a quality table), and the plots
  ``flops_vs_frames.png``, ``memory_vs_frames.png`` and ``quality.png``;
* ``sweep_config.json``: the sweep config that produced them.

Everything resumes: finished analysis rows are skipped, training continues from checkpoints,
existing metrics are read back. A variant whose factors do not divide T gets a row with the
reason instead of numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stunet.nn.config import UNetConfig
from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib
from stunet.train import step as step_lib

ANALYSIS_NAME = "analysis.jsonl"
QUALITY_KEYS = ("colour", "shape", "motion", "speed", "count")


def variant_config(base: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """`base` with `{dotted.field: value}` overrides; an unknown field is a ValueError."""
  c = ml_collections.ConfigDict(base.to_dict())
  for field, value in overrides.items():
    node, parts = c, field.split(".")
    for part in parts[:-1]:
      if part not in node:
        raise ValueError(f"variant override {field!r}: no field {part!r} in the config")
      node = node[part]
    if parts[-1] not in node:
      raise ValueError(f"variant override {field!r}: no field {parts[-1]!r} in the config")
    node[parts[-1]] = tuple(value) if isinstance(value, list) else value
  return c


def _single_device_mesh(config) -> jax.sharding.Mesh:
  return mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:1])


def _frames_error(config, frames: int) -> str:
  try:
    model = UNetConfig.from_config(config.model)
    model.check_input(frames, int(config.data.resolution), int(config.data.resolution))
  except ValueError as e:
    return str(e)
  return ""


def _video_setup(config, frames: int, batch: int):
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.frames = frames
  c.stage.video.global_batch_size = batch
  c.mesh.shape = (1, 1, 1)
  c.text.on_truncation = "silent"
  return build_lib.build_stage(c, stages_lib.get_stage("video"))


def _abstract_batch(setup, batch: int, sharding) -> dict:
  length = setup.tokenizer.max_length
  return {"video": jax.ShapeDtypeStruct((batch,) + setup.example_shape, jnp.uint8,
                                        sharding=sharding),
          "text_ids": jax.ShapeDtypeStruct((batch, length), jnp.int32, sharding=sharding),
          "text_mask": jax.ShapeDtypeStruct((batch, length), jnp.bool_, sharding=sharding)}


def _count_params(state) -> dict[str, int]:
  from stunet.nn.summary import count_params
  counts = count_params(state.params["unet"])
  return {"params_total": counts["total"], "params_temporal": counts["temporal"],
          "params_text": int(sum(x.size for x in jax.tree.leaves(state.params["text"])))}


def _random_state(abstract: Any, seed: int = 0) -> Any:
  """Concrete arrays of the abstract state's shapes: small positive floats, zero integers.

  Timing does not depend on the values; positive values keep Adam's second moments valid.
  """
  rng = np.random.default_rng(seed)

  def leaf(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
      value = np.abs(rng.normal(0.0, 0.02, x.shape)).astype(x.dtype)
    else:
      value = np.zeros(x.shape, x.dtype)
    return jax.device_put(value, x.sharding)
  return jax.tree.map(leaf, abstract)


def analyse(config, frames: int, batch: int = 1, time_repeats: int = 0) -> dict:
  """Params, FLOPs and peak bytes of the compiled video train step at `frames`.

  With `time_repeats > 0` the compiled step also runs that many times on random weights and
  data (after one warm-up run) and the median seconds per step are recorded.
  """
  error = _frames_error(config, frames)
  if error:
    return {"frames": frames, "error": error}
  setup = _video_setup(config, frames, batch)
  mesh = _single_device_mesh(setup.config)
  rules = tuple(tuple(r) for r in setup.config.mesh.rules)
  state = state_lib.abstract_state(setup.boxed_init, mesh, rules, jax.random.key(0))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_in = _abstract_batch(setup, batch, replicated)
  shardings = jax.tree.map(lambda x: x.sharding, state)
  step = step_lib.jit_step(setup.step_fn(), shardings, {k: replicated for k in batch_in}, mesh)
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = step.jitted.lower(state, batch_in).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  memory = compiled.memory_analysis()
  live = (memory.argument_size_in_bytes + memory.output_size_in_bytes
          - memory.alias_size_in_bytes + memory.temp_size_in_bytes)
  peak = max(int(getattr(memory, "peak_memory_in_bytes", 0) or 0), int(live))
  row = {"frames": frames, "batch": batch, **_count_params(state),
         "train_step_flops": float((cost or {}).get("flops", 0.0)),
         "peak_memory_bytes": peak, "temp_memory_bytes": int(memory.temp_size_in_bytes),
         "compile_seconds": compile_s, "error": ""}
  if time_repeats:
    concrete = _random_state(state)
    data = _random_state(batch_in, seed=1)
    times = []
    with jax.set_mesh(mesh):
      for i in range(time_repeats + 1):
        begin = time.perf_counter()
        concrete, metrics = compiled(concrete, data)
        jax.block_until_ready(metrics)
        if i:  # the first run pays one-off allocation costs
          times.append(time.perf_counter() - begin)
    row["step_seconds"] = statistics.median(times)
  return row


def _read_rows(path: str) -> list[dict]:
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


def _append_row(path: str, row: dict) -> None:
  # After an interrupted write the file ends mid-line: start the new row on its own line.
  cut = os.path.exists(path) and os.path.getsize(path) > 0 and not _ends_with_newline(path)
  with open(path, "a", encoding="utf-8") as f:
    f.write(("\n" if cut else "") + json.dumps(row, sort_keys=True) + "\n")


def _ends_with_newline(path: str) -> bool:
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def _key(row: dict) -> tuple:
  return row["variant"], row["kind"], row.get("frames")


class Sweep:
  """One sweep: its config, workdir and the rows recorded so far (see the module doc)."""

  def __init__(self, sweep: ml_collections.ConfigDict, workdir: str,
               log: Callable[[str], None] = print):
    self.sweep = sweep
    self.workdir = os.path.abspath(workdir)
    self.log = log
    names = [v[0] for v in sweep.variants]
    if len(set(names)) != len(names):
      raise ValueError(f"sweep.variants: repeated names in {names}")
    if not names:
      raise ValueError("sweep.variants is empty")
    self.configs = {name: variant_config(sweep.base, dict(overrides))
                    for name, overrides in sweep.variants}
    os.makedirs(self.workdir, exist_ok=True)
    self.analysis_path = os.path.join(self.workdir, ANALYSIS_NAME)
    with open(os.path.join(self.workdir, "sweep_config.json"), "w") as f:
      f.write(sweep.to_json_best_effort(indent=2, sort_keys=True) + "\n")

  def rows(self) -> list[dict]:
    return _read_rows(self.analysis_path)

  def run_analysis(self) -> None:
    done = {_key(r) for r in self.rows()}
    for name, config in self.configs.items():
      for frames in self.sweep.frames:
        if (name, "analysis", frames) in done:
          continue
        self.log(f"[{name}] compiling the train step at T={frames}")
        row = analyse(config, int(frames), int(self.sweep.analysis_batch),
                      int(self.sweep.step_time_repeats))
        _append_row(self.analysis_path, {"variant": name, "kind": "analysis", **row})

  def run_training(self, train_steps: int, eval_prompts: int) -> None:
    """Trains every variant's video stage for `train_steps` from one T2I run, then evaluates."""
    from stunet.eval import run_evaluation
    from stunet.train import loop
    t2i_dir = os.path.join(self.workdir, "runs", "t2i")
    base = ml_collections.ConfigDict(self.sweep.base.to_dict())
    base.stages = "t2i"
    self.log(f"[t2i] training the shared T2I U-Net in {t2i_dir}")
    loop.train(base, t2i_dir)
    done = {_key(r) for r in self.rows()}
    for name, config in self.configs.items():
      if (name, "quality", None) in done:
        continue
      c = ml_collections.ConfigDict(config.to_dict())
      c.stages = "video"
      c.stage.video.num_steps = int(train_steps)
      c.stage.video.init_from = os.path.join(t2i_dir, "t2i")
      c.log.num_samples = 0
      workdir = os.path.join(self.workdir, "runs", name)
      error = _frames_error(c, int(c.data.frames))
      if error:
        _append_row(self.analysis_path, {"variant": name, "kind": "quality", "error": error})
        continue
      self.log(f"[{name}] training the video stage for {train_steps} steps in {workdir}")
      results = loop.train(c, workdir)
      if results[-1].preempted:
        return
      record = run_evaluation.evaluate_run(
          workdir, run_evaluation.EvalOptions(split="test", max_prompts=int(eval_prompts)))
      s = record["summary"]
      _append_row(self.analysis_path, {
          "variant": name, "kind": "quality", "error": "", "train_steps": int(train_steps),
          "num_clips": s["num_clips"], "metrics_json": os.path.join(record["out_dir"],
                                                                    "metrics.json"),
          **{f"acc_{k}": s["accuracy"][k] for k in QUALITY_KEYS},
          "all_correct": s["all_correct"], "presence": s["consistency"]["presence"],
          "smooth": s["consistency"]["smooth"]})

  def write_outputs(self) -> dict[str, str]:
    return write_outputs(self.rows(), self.workdir, [v[0] for v in self.sweep.variants])


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
    latest[_key(r)] = r  # a later row (a recomputation) wins
  analysis = [r for k, r in latest.items() if k[1] == "analysis"]
  quality = {r["variant"]: r for k, r in latest.items() if k[1] == "quality"}
  order = {v: i for i, v in enumerate(variants)}
  analysis.sort(key=lambda r: (order.get(r["variant"], len(order)), r["frames"]))

  paths = {"csv": os.path.join(workdir, "results.csv"),
           "markdown": os.path.join(workdir, "results.md")}
  columns = ["variant", "frames", "batch", "params_total", "params_temporal",
             "train_step_flops", "peak_memory_bytes", "step_seconds", "acc_colour", "acc_shape",
             "acc_motion", "acc_speed", "acc_count",
             "all_correct", "presence", "error"]
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
    lines.append(f"| {r['variant']} | {r['frames']} | {r['batch']} | {r['params_total']:,} / "
                 f"{r['params_temporal']:,} | {_fmt(r['train_step_flops'], 'flops')} | "
                 f"{_fmt(r['peak_memory_bytes'], 'bytes')} | {_fmt(r.get('step_seconds'))} | |")
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
        ax.plot(xs, ys, marker="o", label=v)
    ax.set_xlabel("frames T")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs T")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = os.path.join(workdir, f"{name}_vs_frames.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    out[f"{name}_plot"] = path
  if quality:
    names = [v for v in variants if v in quality and not quality[v].get("error")]
    keys = ("acc_colour", "acc_shape", "acc_motion", "acc_speed", "all_correct")
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(names))
    for i, v in enumerate(names):
      values = [quality[v].get(k) for k in keys]
      values = [np.nan if x is None else x for x in values]
      ax.bar(np.arange(len(keys)) + i * width, values, width, label=v)
    ax.set_xticks(np.arange(len(keys)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([k.replace("acc_", "") for k in keys])
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction correct (test split)")
    ax.legend(fontsize=8)
    path = os.path.join(workdir, "quality.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    out["quality_plot"] = path
  return out
