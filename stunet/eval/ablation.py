"""The temporal down-sampling ablation (SPEC §1, §6-§7; `experiments/ablate.py`).

The paper argues for down-sampling in time inside the U-Net but gives no quantitative ablation
of it (SPEC §6). A sweep is a config (`experiments/configs/ablation.py`): a base experiment
config and a list of variants, each a name, `{dotted.field: value}` overrides of it and
optionally a kind (`VARIANT_KINDS`):

* ``video`` (the default): one STUNet, the video stage of the variant's config;
* ``keyframes_tsr``: the cascade Lumiere argues against (SPEC §1,
  `stunet.conditioning.keyframes_tsr`):
  a keyframe model (the video stage on every ``stage.tsr.keyframe_interval``-th frame) and a
  TSR model (stage ``tsr``) filling the frames between the keyframes. Its analysis numbers are
  the sums over both models (parameters, FLOPs of one train step of each, the two peak
  memories, the two step times; the row says so and keeps each model's own numbers); when
  training, the video-stage step budget is split between the two models
  (``sweep.keyframe_step_fraction`` to the keyframe model), at the same batch.

Per variant the sweep records, in ``<sweep workdir>``:

* ``analysis.jsonl``: per variant and clip length T, the parameter count and XLA's forward +
  backward FLOPs and peak memory of the compiled video train step (on the local CPU device,
  batch ``analysis_batch``), and the measured time of that compiled step (``step_time_repeats``
  runs on random weights; 0 = compile only);
* with ``train_steps > 0``: every variant's video stage trained for the same number of steps
  from one shared T2I checkpoint (same data, batch and seed), then `run_evaluation` on the test
  split, in ``<sweep workdir>/runs/<variant>/``; the quality row holds the metrics over all
  sampled captions and over the fast-motion ones (a quick or a bouncing object, where
  keyframes alias the motion), columns ``fast_*``;
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

from stunet.conditioning import keyframes_tsr
from stunet.nn.config import UNetConfig
from stunet.parallel import mesh as mesh_lib
from stunet.train import build as build_lib
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib
from stunet.train import step as step_lib

ANALYSIS_NAME = "analysis.jsonl"
QUALITY_KEYS = ("colour", "shape", "motion", "speed", "count")
VARIANT_KINDS = ("video", "keyframes_tsr")
# Numbers of the keyframes + TSR rows that are sums over the two models.
SUMMED = ("params_total", "params_temporal", "params_text", "train_step_flops",
          "peak_memory_bytes", "temp_memory_bytes", "compile_seconds", "step_seconds")


def variant_kind(variant) -> str:
  """The kind of a sweep variant ``(name, overrides[, kind])``; 'video' when not given."""
  kind = variant[2] if len(variant) > 2 else "video"
  if kind not in VARIANT_KINDS:
    raise ValueError(f"sweep.variants: variant {variant[0]!r} has kind {kind!r}; expected one "
                     f"of {VARIANT_KINDS}")
  return kind


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


def _stage_setup(config, frames: int, batch: int, stage: str = "video"):
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.frames = frames
  c.stage[stage].global_batch_size = batch
  c.mesh.shape = (1, 1, 1)
  c.text.on_truncation = "silent"
  return build_lib.build_stage(c, stages_lib.get_stage(stage))


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


def analyse(config, frames: int, batch: int = 1, time_repeats: int = 0,
            stage: str = "video") -> dict:
  """Params, FLOPs and peak bytes of the compiled train step of `stage` at `frames`.

  With `time_repeats > 0` the compiled step also runs that many times on random weights and
  data (after one warm-up run) and the median seconds per step are recorded.
  """
  error = _frames_error(config, frames)
  if error:
    return {"frames": frames, "error": error}
  try:
    setup = _stage_setup(config, frames, batch, stage)
  except ValueError as e:  # a stage's own fields (e.g. the TSR keyframe interval) do not fit
    return {"frames": frames, "error": str(e)}
  mesh = _single_device_mesh(setup.config)
  rules = setup.rules
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


def analyse_keyframes_tsr(config, frames: int, batch: int = 1, time_repeats: int = 0) -> dict:
  """`analyse` of the keyframe model (at ``frames / k``) and the TSR model (at ``frames``).

  The row's `SUMMED` numbers are the sums over the two models (``models`` says so); each
  model's own numbers are kept as ``keyframes_<key>`` and ``tsr_<key>``.
  """
  interval = config.stage.tsr.keyframe_interval
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.frames = frames
  try:
    keyframe_config = keyframes_tsr.keyframe_config(c)
  except ValueError as e:
    return {"frames": frames, "error": str(e)}
  error = _frames_error(c, frames)  # before compiling the keyframe model for nothing
  if error:
    return {"frames": frames, "error": f"tsr model: {error}"}
  parts = {"keyframes": analyse(keyframe_config, frames // interval, batch, time_repeats),
           "tsr": analyse(c, frames, batch, time_repeats, stage="tsr")}
  for name, part in parts.items():
    if part.get("error"):
      return {"frames": frames, "error": f"{name} model: {part['error']}"}
  row = {"frames": frames, "batch": batch, "error": "", "models": "keyframes+tsr",
         "keyframe_interval": interval, "keyframe_frames": frames // interval,
         "keyframe_temporal_factors": list(keyframe_config.model.temporal_factors)}
  for key in SUMMED:
    if all(key in part for part in parts.values()):
      row[key] = sum(part[key] for part in parts.values())
      row.update({f"{name}_{key}": part[key] for name, part in parts.items()})
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
    self.configs = {v[0]: variant_config(sweep.base, dict(v[1])) for v in sweep.variants}
    self.kinds = {v[0]: variant_kind(v) for v in sweep.variants}
    for name, kind in self.kinds.items():
      if kind == "keyframes_tsr":
        keyframes_tsr.check_interval_value(self.configs[name].stage.tsr.keyframe_interval,
                                           f"variant {name!r}: {keyframes_tsr.INTERVAL_FIELD}")
    fraction = self.keyframe_step_fraction
    if not 0.0 < fraction < 1.0:
      raise ValueError(f"sweep.keyframe_step_fraction must be in (0, 1) (the keyframe model's "
                       f"share of a keyframes_tsr variant's steps), got {fraction!r}")
    os.makedirs(self.workdir, exist_ok=True)
    self.analysis_path = os.path.join(self.workdir, ANALYSIS_NAME)
    with open(os.path.join(self.workdir, "sweep_config.json"), "w") as f:
      f.write(sweep.to_json_best_effort(indent=2, sort_keys=True) + "\n")

  @property
  def keyframe_step_fraction(self) -> float:
    return float(self.sweep.get("keyframe_step_fraction", 0.5))

  def rows(self) -> list[dict]:
    return _read_rows(self.analysis_path)

  def run_analysis(self) -> None:
    done = {_key(r) for r in self.rows()}
    for name, config in self.configs.items():
      for frames in self.sweep.frames:
        if (name, "analysis", frames) in done:
          continue
        args = (config, int(frames), int(self.sweep.analysis_batch),
                int(self.sweep.step_time_repeats))
        if self.kinds[name] == "keyframes_tsr":
          self.log(f"[{name}] compiling the keyframe and TSR train steps at T={frames}")
          row = analyse_keyframes_tsr(*args)
        else:
          self.log(f"[{name}] compiling the train step at T={frames}")
          row = analyse(*args)
        _append_row(self.analysis_path, {"variant": name, "kind": "analysis", **row})

  def run_training(self, train_steps: int, eval_prompts: int,
                   mesh: jax.sharding.Mesh | None = None) -> None:
    """Trains every variant for `train_steps` from one T2I run, then evaluates it.

    `mesh` (default: each run's `config.mesh` over all devices) is the one every stage trains
    and samples on.
    """
    from stunet.train import loop
    t2i_dir = os.path.join(self.workdir, "runs", "t2i")
    base = ml_collections.ConfigDict(self.sweep.base.to_dict())
    base.stages = "t2i"
    self.log(f"[t2i] training the shared T2I U-Net in {t2i_dir}")
    loop.train(base, t2i_dir, mesh=mesh)
    done = {_key(r) for r in self.rows()}
    for name, config in self.configs.items():
      if (name, "quality", None) in done:
        continue
      workdir = os.path.join(self.workdir, "runs", name)
      train = (self._train_keyframes_tsr if self.kinds[name] == "keyframes_tsr"
               else self._train_video)
      outcome = train(name, config, int(train_steps), os.path.join(t2i_dir, "t2i"), workdir,
                      mesh)
      if outcome is None:  # preempted
        return
      if "error" in outcome:
        _append_row(self.analysis_path, {"variant": name, "kind": "quality", **outcome})
        continue
      self._evaluate(name, workdir, int(train_steps), int(eval_prompts), mesh, **outcome)

  def _train_video(self, name: str, config, train_steps: int, t2i: str, workdir: str,
                   mesh: jax.sharding.Mesh | None) -> dict | None:
    """The variant's video stage; `{'error': ...}`, `{}` when trained, None when preempted."""
    from stunet.train import loop
    c = ml_collections.ConfigDict(config.to_dict())
    c.stages = "video"
    c.stage.video.num_steps = train_steps
    c.stage.video.init_from = t2i
    c.log.num_samples = 0
    error = _frames_error(c, int(c.data.frames))
    if error:
      return {"error": error}
    self.log(f"[{name}] training the video stage for {train_steps} steps in {workdir}")
    return None if loop.train(c, workdir, mesh=mesh)[-1].preempted else {}

  def _train_keyframes_tsr(self, name: str, config, train_steps: int, t2i: str, workdir: str,
                           mesh: jax.sharding.Mesh | None) -> dict | None:
    """The keyframe model (stage video) and the TSR model (stage tsr) in one workdir, the
    step budget split by `keyframe_step_fraction`, both at the video stage's batch."""
    from stunet.apps import sample_run
    from stunet.train import loop
    keyframe_steps = int(round(train_steps * self.keyframe_step_fraction))
    tsr_steps = train_steps - keyframe_steps
    if keyframe_steps < 1 or tsr_steps < 1:
      return {"error": f"train_steps={train_steps} leaves no step for one of the keyframe and "
                       f"TSR models (keyframe_step_fraction={self.keyframe_step_fraction})"}
    c = ml_collections.ConfigDict(config.to_dict())
    c.log.num_samples = 0
    try:
      keyframes = keyframes_tsr.keyframe_config(c)
    except ValueError as e:
      return {"error": str(e)}
    error = _frames_error(c, int(c.data.frames))
    if error:
      return {"error": f"tsr model: {error}"}
    keyframes.stages = "video"
    keyframes.stage.video.num_steps = keyframe_steps
    keyframes.stage.video.init_from = t2i
    tsr = ml_collections.ConfigDict(c.to_dict())
    tsr.stages = "tsr"
    # The same optimiser settings and batch as the video stage of the other variants.
    tsr.stage.tsr.update(dict(num_steps=tsr_steps, init_from=t2i,
                              global_batch_size=c.stage.video.global_batch_size,
                              learning_rate=c.stage.video.learning_rate))
    for stage, stage_config, steps in (("keyframe (video)", keyframes, keyframe_steps),
                                       ("tsr", tsr, tsr_steps)):
      self.log(f"[{name}] training the {stage} stage for {steps} steps in {workdir}")
      if loop.train(stage_config, workdir, mesh=mesh)[-1].preempted:
        return None
    return {"tsr": sample_run.TSROptions(workdir=workdir),
            "extra": {"keyframe_steps": keyframe_steps, "tsr_steps": tsr_steps,
                      "keyframe_interval": int(c.stage.tsr.keyframe_interval)}}

  def _evaluate(self, name: str, workdir: str, train_steps: int, eval_prompts: int,
                mesh: jax.sharding.Mesh | None, tsr=None, extra: dict | None = None) -> None:
    from stunet.eval import run_evaluation
    record = run_evaluation.evaluate_run(
        workdir, run_evaluation.EvalOptions(split="test", max_prompts=eval_prompts), mesh=mesh,
        tsr=tsr)
    row = {"variant": name, "kind": "quality", "error": "", "train_steps": train_steps,
           "metrics_json": os.path.join(record["out_dir"], "metrics.json"),
           **_quality_numbers(record["summary"]), **(extra or {})}
    fast = record["subsets"].get(run_evaluation.FAST_MOTION)
    if fast is not None:
      row.update({f"fast_{k}": v for k, v in _quality_numbers(fast).items()})
    _append_row(self.analysis_path, row)

  def write_outputs(self) -> dict[str, str]:
    return write_outputs(self.rows(), self.workdir, [v[0] for v in self.sweep.variants])


def _quality_numbers(summary: dict) -> dict:
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
