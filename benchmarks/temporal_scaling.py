r"""Train-step FLOPs and memory vs clip length T: the STUNet against temporal factors 1.

Lumiere's efficiency argument (SPEC §1-2) is that down-sampling in time as well as space puts
most computation on a compact space-time representation. This makes it quantitative: for each
T the video-stage train step is compiled (never run) for the config's STUNet and for the same
network with every `model.temporal_factors` entry set to 1, and XLA's cost analysis (FLOPs)
and memory analysis (arguments + outputs - donated + temporaries) of the compiled step are
tabulated and plotted. A second table splits the forward pass's matmul/conv FLOPs by U-Net
level (`benchmarks.level_flops`) at the largest T, which explains the ratio.

Compiling the base config's step takes minutes on a CPU, so the default runs it at a reduced
frame size (`--resolution`, the base widths and depth unchanged) and the per-level split at
the config's own size (a jaxpr walk: no compile). XLA's LLVM optimisation level is lowered
(unless XLA_FLAGS is set): that changes generated code, not the HLO analyses read here.
XLA:CPU's default concurrency-optimised scheduler is also turned off: it hoists the
recomputation of `model.remat` blocks next to the forward pass, so its schedule keeps every
block's internals alive and remat saves nothing (demo widths, 16x64x64: 1611 MiB temporaries
without remat, 1618 MiB with it under the default scheduler, 1010 MiB with it under the
memory-minimising one). Accelerator schedulers are memory-aware, so the memory-minimising
schedule is the one that predicts them.

  python -m benchmarks.temporal_scaling                 # base widths, 32x32, T = 16..128
  python -m benchmarks.temporal_scaling --quick         # two-level tiny model, a smoke run
"""

from __future__ import annotations

import os

if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                             "--xla_llvm_disable_expensive_passes=true "
                             "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import ast  # noqa: E402
import dataclasses  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import level_flops  # noqa: E402
from benchmarks import train_setup  # noqa: E402
from stunet.nn import summary  # noqa: E402
from stunet.nn.config import UNetConfig  # noqa: E402
from stunet.nn.stunet import STUNet  # noqa: E402
from stunet.train import measure as measure_lib

_CONFIG = flags.DEFINE_string("config", "base", "experiments/configs/<name>.py to measure.")
_FRAMES = flags.DEFINE_list("frames", ["16", "32", "48", "80", "128"], "Clip lengths T.")
_RESOLUTION = flags.DEFINE_integer("resolution", 32,
                                   "Frame size of the compiled steps (0 = the config's).")
_BATCH = flags.DEFINE_integer("batch", 1, "Clips per step.")
_LEVELS_FRAMES = flags.DEFINE_integer("levels_frames", 80,
                                      "T of the per-level FLOPs split (0 = largest of --frames).")
_MODEL = flags.DEFINE_multi_string(
    "model", [], "field=python literal model override applied to both networks, repeatable, "
    "e.g. --model='temporal_factors=(4, 2, 2, 1)' --model='num_res_blocks=(1, 2, 2, 2, 2)'.")
_VARIANT = flags.DEFINE_multi_string(
    "variant", [], "field=python literal: a third network, the STUNet with these model "
    "overrides on top of --model (e.g. --variant='temporal_factors=(4, 2, 2, 1)' "
    "--variant='num_res_blocks=(1, 2, 2, 2, 2)'), compiled with its own factors-1 network.")
_QUICK = flags.DEFINE_bool("quick", False, "Two-level tiny model, T = 4 at 8x8: a smoke run.")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/results/temporal_scaling.md",
                              "Markdown results ('' = print only).")
_PLOT = flags.DEFINE_string("plot", "benchmarks/results/temporal_scaling.png",
                            "Plot file ('' = no plot).")

FACTORS_ONE = "temporal factors 1"
VARIANT = "variant"
VARIANT_ONE = "variant, temporal factors 1"


@dataclasses.dataclass
class Point:
  frames: int
  variant: str  # "STUNet", FACTORS_ONE, VARIANT or VARIANT_ONE
  flops: float
  memory: int
  temp_memory: int  # XLA temporaries: activations and workspace, without the train state
  compile_seconds: float


def variant_config(name: str, variant: str, frames: int, resolution: int, batch: int,
                   model_overrides: dict | None = None) -> ml_collections.ConfigDict:
  overrides = dict(model_overrides or {})
  factors = overrides.get("temporal_factors", train_setup.load_config(name).model.temporal_factors)
  if variant in (FACTORS_ONE, VARIANT_ONE):
    overrides["temporal_factors"] = (1,) * len(factors)
  return train_setup.benchmark_config(name, frames=frames, resolution=resolution, batch=batch,
                                      **overrides)


def measure(name: str, variant: str, frames: int, resolution: int, batch: int,
            model_overrides: dict | None = None) -> Point:
  bench = train_setup.TrainStepSetup(variant_config(name, variant, frames, resolution, batch,
                                                    model_overrides))
  compiled = bench.compile_abstract()
  memory = measure_lib.memory(compiled)
  return Point(frames, variant, measure_lib.flops(compiled), memory.peak_bytes,
               memory.temp_bytes, bench.compile_seconds)


def level_of(path: str) -> str | None:
  """'STUNet/down_1/temporal_0/...' -> 'down_1 temporal'; the embeddings etc. -> 'other'."""
  parts = path.split("/")
  if len(parts) < 2 or parts[0] != "STUNet":
    return None
  top = parts[1]
  if not top.startswith(("down_", "up_", "mid")):
    return "other (conv_in/out, embeddings)"
  kind = "temporal" if any(p.startswith("temporal") for p in parts[2:]) else "spatial"
  return f"{top} {kind}"


def level_split(name: str, frames: int, resolution: int, batch: int,
                model_overrides: dict | None = None
                ) -> tuple[dict[str, float], dict[str, float], UNetConfig]:
  """Forward matmul/conv FLOPs by level for the STUNet and the factors-1 network."""
  out = []
  for variant in ("STUNet", FACTORS_ONE):
    config = variant_config(name, variant, frames, resolution, batch, model_overrides)
    model_config = UNetConfig.from_config(config.model)
    inputs = summary.abstract_inputs(model_config, batch, frames, resolution,
                                     int(config.text.max_length), int(config.text.width))
    model = STUNet(model_config)
    params = jax.eval_shape(model.init, jax.random.key(0), *inputs)
    by_path = level_flops.flops_by_path(lambda p, *a: model.apply(p, *a), params, *inputs)
    out.append(level_flops.group_flops(by_path, level_of))
    if variant == "STUNet":
      stunet_config = model_config
  return out[0], out[1], stunet_config


def _level_order(key: str) -> tuple:
  top, _, kind = key.partition(" ")
  if top.startswith("down_"):
    rank = (0, int(top[5:]))
  elif top == "mid":
    rank = (1, 0)
  elif top.startswith("up_"):
    rank = (2, -int(top[3:]))
  else:
    rank = (3, 0)
  return rank + (kind,)


def level_table(stunet: dict[str, float], flat: dict[str, float], cfg: UNetConfig,
                frames: int) -> str:
  rows = []
  total_s, total_f = sum(stunet.values()), sum(flat.values())
  for key in sorted(set(stunet) | set(flat), key=_level_order):
    top = key.split(" ")[0]
    level = cfg.num_levels - 1 if top == "mid" else (
        int(top.split("_")[1]) if top[:3] in ("dow", "up_") else None)
    t_level = frames
    if level is not None:
      for f in cfg.temporal_factors[:level]:
        t_level //= f
    s, f = stunet.get(key, 0.0), flat.get(key, 0.0)
    rows.append([key, "-" if level is None else t_level, common.si(s), common.si(f),
                 f"{100 * s / total_s:.1f}%", f"{100 * f / total_f:.1f}%",
                 f"{s / f:.2f}" if f else "-"])
  rows.append(["total", "", common.si(total_s), common.si(total_f), "100%", "100%",
               f"{total_s / total_f:.3f}"])
  return common.markdown_table(
      ["level / layers", "STUNet frames", "STUNet fwd FLOPs", "factors-1 fwd FLOPs",
       "STUNet share", "factors-1 share", "ratio"], rows)


def scaling_table(points: list[Point], network: str = "STUNet",
                  flat: str = FACTORS_ONE) -> str:
  """Per T: `network` against `flat` (FLOPs, memory and their ratios)."""
  by = {(p.frames, p.variant): p for p in points}
  rows = []
  for t in sorted({p.frames for p in points}):
    s, f = by.get((t, network)), by.get((t, flat))
    if s is None or f is None:
      continue
    rows.append([t, common.si(s.flops), common.si(f.flops), f"{s.flops / f.flops:.3f}",
                 common.si(s.memory, "B"), common.si(f.memory, "B"),
                 f"{s.memory / f.memory:.3f}", f"{s.temp_memory / f.temp_memory:.3f}",
                 f"{s.compile_seconds:.0f} / {f.compile_seconds:.0f}"])
  return common.markdown_table(
      ["T", f"{network} FLOPs/step", f"{flat} FLOPs/step", "FLOPs ratio",
       f"{network} memory", f"{flat} memory", "memory ratio", "temporaries ratio",
       "compile s"], rows)


_STYLES = {"STUNet": "o-", FACTORS_ONE: "s--", VARIANT: "^-", VARIANT_ONE: "v:"}


def plot(points: list[Point], path: str, title: str):
  """Three panels vs T: FLOPs, memory, and each network's ratios to its factors-1 network."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
  by = {(p.frames, p.variant): p for p in points}
  for variant, style in _STYLES.items():
    pts = sorted((p for p in points if p.variant == variant), key=lambda p: p.frames)
    if not pts:
      continue
    t = [p.frames for p in pts]
    axes[0].plot(t, [p.flops / 1e12 for p in pts], style, label=variant)
    axes[1].plot(t, [p.memory / 2 ** 30 for p in pts], style, label=variant)
  for network, flat, color in (("STUNet", FACTORS_ONE, "C0"), (VARIANT, VARIANT_ONE, "C2")):
    t = sorted(p.frames for p in points if p.variant == network and (p.frames, flat) in by)
    if not t:
      continue
    axes[2].plot(t, [by[(x, network)].flops / by[(x, flat)].flops for x in t], "o-",
                 color=color, label=f"{network} FLOPs")
    axes[2].plot(t, [by[(x, network)].memory / by[(x, flat)].memory for x in t], "s--",
                 color=color, label=f"{network} memory")
  for target in (0.35, 0.5):
    axes[2].axhline(target, color="grey", lw=0.8, ls=":")
  axes[0].set_ylabel("train-step TFLOPs (XLA cost analysis)")
  axes[1].set_ylabel("train-step memory GiB (XLA memory analysis)")
  axes[2].set_ylabel("ratio to the same network with temporal factors 1")
  axes[2].set_ylim(0, 1.05)
  for ax in axes:
    ax.set_xlabel("frames T")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(report: str, path: str):
  common.write_report(report, path)


def parse_overrides(items: list[str], flag: str) -> dict:
  """['field=python literal', ...] -> {field: value}; the error names the flag and item."""
  out = {}
  for item in items:
    field, _, value = item.partition("=")
    try:
      out[field.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"--{flag}={item!r}: expected field=python literal") from e
  return out


def main(argv):
  del argv
  quick = _QUICK.value
  name = "tiny" if quick else _CONFIG.value
  overrides = dict(train_setup.QUICK_MODEL) if quick else {}
  overrides.update(parse_overrides(_MODEL.value, "model"))
  variant_overrides = dict(overrides, **parse_overrides(_VARIANT.value, "variant"))
  frames = [4] if quick else [int(t) for t in _FRAMES.value]
  config = train_setup.load_config(name)
  own_resolution = int(config.data.resolution)
  resolution = 8 if quick else (_RESOLUTION.value or own_resolution)
  levels_frames = frames[-1] if quick or not _LEVELS_FRAMES.value else _LEVELS_FRAMES.value
  batch = _BATCH.value
  machine = common.machine_info()
  print(f"machine: {machine}", flush=True)
  command = (f"python -m benchmarks.temporal_scaling --quick={quick} --config={name} "
             f"--frames={','.join(map(str, frames))} --resolution={resolution} "
             f"--batch={batch} --levels_frames={levels_frames}"
             + "".join(f" --model='{m}'" for m in _MODEL.value)
             + "".join(f" --variant='{m}'" for m in _VARIANT.value)
             + (f" --output={_OUTPUT.value}" if _OUTPUT.value != _OUTPUT.default else ""))
  title = (f"{name}{' (two-level quick variant)' if quick else ''}"
           f"{' with ' + ', '.join(_MODEL.value) if _MODEL.value else ''} config widths, "
           f"{resolution}x{resolution} frames, batch {batch}, "
           f"temporal factors "
           f"{tuple(overrides.get('temporal_factors', config.model.temporal_factors))} vs 1")

  levels_resolution = 8 if quick else own_resolution
  s_levels, f_levels, cfg = level_split(name, levels_frames, levels_resolution, batch, overrides)
  levels = level_table(s_levels, f_levels, cfg, levels_frames)
  print(levels, flush=True)

  points: list[Point] = []

  def report() -> str:
    return "\n".join([
        "# Temporal scaling: STUNet vs the same network with temporal factors 1", "",
        f"Command: `{command}`", "", f"Machine: {machine}", "",
        "Compile-only: FLOPs from XLA's cost analysis and memory (arguments + outputs - "
        "donated + temporaries) from XLA's memory analysis of the compiled video-stage train "
        f"step (config dtype {config.model.dtype}, remat {config.model.remat}). The memory "
        "ratio covers the whole step including the train state; the temporaries ratio only "
        "XLA's temporaries (activations), the part that grows with T. "
        + (f"The steps are compiled at {resolution}x{resolution} instead of the config's "
           f"{own_resolution}x{own_resolution} (compile time on this CPU); widths and depth are "
           "the config's. " if resolution != own_resolution else "")
        + "No wall-clock numbers are involved except compile times (shared, noisy machine).",
        "", f"## FLOPs and memory per train step vs T ({title})", "",
        scaling_table(points), "",
        *([f"## The variant: {', '.join(_VARIANT.value)}", "",
           "Against its own temporal-factors-1 network:", "",
           scaling_table(points, VARIANT, VARIANT_ONE), "",
           *(["Against the config's temporal-factors-1 network (the flat network above):", "",
              scaling_table(points, VARIANT, FACTORS_ONE), ""] if not same_flat else [])]
          if _VARIANT.value else []),
        f"## Forward matmul/conv FLOPs by level, T = {levels_frames}, "
        f"{levels_resolution}x{levels_resolution} (jaxpr count, `benchmarks.level_flops`)", "",
        levels, ""])

  networks = [("STUNet", overrides), (FACTORS_ONE, overrides)]
  if _VARIANT.value:
    networks += [(VARIANT, variant_overrides), (VARIANT_ONE, variant_overrides)]
  flat_of = lambda o: dict(o, temporal_factors=(1,) * len(o.get(
      "temporal_factors", config.model.temporal_factors)))
  # A variant that only changes the temporal factors has the config's flat network.
  same_flat = flat_of(variant_overrides) == flat_of(overrides)
  for t in frames:
    for variant, model_overrides in networks:
      start = time.perf_counter()
      if variant == VARIANT_ONE and same_flat:
        points.append(dataclasses.replace(
            next(p for p in points if p.frames == t and p.variant == FACTORS_ONE),
            variant=VARIANT_ONE))
      else:
        points.append(measure(name, variant, t, resolution, batch, model_overrides))
      p = points[-1]
      print(f"T={t} {variant}: {common.si(p.flops)} FLOPs, {common.si(p.memory, 'B')} "
            f"({time.perf_counter() - start:.0f} s)", flush=True)
    # Written after every T: a long run that is stopped keeps the points it has.
    write(report(), _OUTPUT.value)
    if _PLOT.value:
      os.makedirs(os.path.dirname(_PLOT.value) or ".", exist_ok=True)
      plot(points, _PLOT.value, title)
  print(report())


if __name__ == "__main__":
  app.run(main)
