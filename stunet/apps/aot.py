"""Ahead-of-time compilation of the sharded train step for a TPU topology, without TPUs.

With libtpu installed (the `tpu` extra), `jax.experimental.topologies.get_topology_desc`
describes a TPU slice as compile-only devices. The real train step is lowered with
`ShapeDtypeStruct`s that carry the mesh's shardings (the state from `state.abstract_state`,
the batch from the data config) and compiled by the TPU compiler; its memory analysis says
whether the run fits in each chip's HBM, and its cost analysis gives the FLOPs per device.

Topology names follow Cloud TPU accelerator types: `v4-N` and `v5p-N` count TensorCores
(two per chip, compiled in 'megacore' mode: one device per chip), `v5e-N` / `v5litepod-N` and
`v6e-N` count chips (one core each).

A frozen pre-trained T5 encoder (`text.kind='t5'`) is part of the compiled step, but its
weights and tokenizer need not be on this machine: only shapes matter to the compiler, so
without `text.t5_dir` the encoder is built from a named T5 architecture (`T5_ARCHITECTURES`,
default T5-v1.1-XXL, Imagen's encoder) and the token count from `text.max_length`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stunet.data import global_batch
from stunet.nn import attention as attention_lib
from stunet.parallel import hlo
from stunet.parallel import mesh as mesh_lib
from stunet.parallel import sharding as sharding_lib
from stunet.text import config as text_config_lib
from stunet.text import factory as text_factory
from stunet.text import t5 as t5_lib
from stunet.train import build as build_lib
from stunet.train import denoiser as denoiser_lib
from stunet.train import measure
from stunet.train import stages as stages_lib
from stunet.train import step as step_lib

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation as the compiler sees it (one device per chip).

  Attributes:
    name: libtpu's generation prefix of topology names ('v4', 'v5', 'v5e', 'v6e').
    cores_per_chip: TensorCores per chip; accelerator types `v4-N`/`v5p-N` count cores.
    chip_config: libtpu chip config: 'megacore' fuses a chip's two cores into one device.
    dims: torus dimensions (3 for v4/v5p, 2 for v5e/v6e).
    hbm_bytes: HBM per device as the compiler reports it.
    peak_flops: peak bf16 FLOP/s per chip.
    hbm_bandwidth: HBM bytes/s per chip (Cloud TPU's published figures).
  """
  name: str
  cores_per_chip: int
  chip_config: str
  dims: int
  hbm_bytes: int
  peak_flops: float
  hbm_bandwidth: float


CHIPS = {
    "v4": Chip("v4", 2, "megacore", 3, int(30.75 * GIB), 275e12, 1200e9),
    "v5p": Chip("v5", 2, "megacore", 3, int(95.74 * GIB), 459e12, 2765e9),
    "v5e": Chip("v5e", 1, "default", 2, int(15.75 * GIB), 197e12, 819e9),
    "v6e": Chip("v6e", 1, "default", 2, int(31.25 * GIB), 918e12, 1640e9),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e"}


@dataclasses.dataclass(frozen=True)
class Topology:
  """A TPU slice (or several) named like a Cloud TPU accelerator type."""
  accelerator_type: str  # e.g. 'v5p-128'
  chip: Chip
  shape: tuple[int, ...]  # chips along each torus dimension
  num_slices: int

  @property
  def num_chips(self) -> int:
    return math.prod(self.shape) * self.num_slices

  @property
  def topology_name(self) -> str:
    return f"{self.chip.name}:{'x'.join(str(s) for s in self.shape)}"

  def devices(self) -> list[Any]:
    """Compile-only devices of the slice(s) (needs libtpu: `pip install stunet[tpu]`)."""
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    host = tuple(min(2, s) for s in self.shape[:2]) + (1,)
    try:
      desc = topologies.get_topology_desc(
          platform="tpu", topology_name=self.topology_name, chip_config_name=self.chip.chip_config,
          chips_per_host_bounds=host, num_slices=self.num_slices)
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(f"cannot describe TPU topology {self.topology_name!r} "
                         f"({self.accelerator_type}); AOT compilation needs libtpu: "
                         f"pip install 'jax[tpu]' (the stunet 'tpu' extra). Cause: {e}") from e
    return list(desc.devices)


# Hugging Face T5 v1.1 encoders (their `config.json`s): gated-GELU feed-forward, 32128 ids.
T5_ARCHITECTURES = {
    name: t5_lib.T5Config(vocab_size=32128, d_model=d_model, d_kv=64, d_ff=d_ff,
                          num_layers=layers, num_heads=heads, dense_act_fn="gelu_new",
                          is_gated_act=True)
    for name, d_model, d_ff, layers, heads in (
        ("t5-v1_1-small", 512, 1024, 8, 6),
        ("t5-v1_1-base", 768, 2048, 12, 12),
        ("t5-v1_1-large", 1024, 2816, 24, 16),
        ("t5-v1_1-xl", 2048, 5120, 24, 32),
        ("t5-v1_1-xxl", 4096, 10240, 24, 64),
    )
}


class ShapeOnlyTokenizer:
  """Stands in for a tokenizer whose files are absent: it knows `max_length` and no more."""

  def __init__(self, max_length: int):
    self.max_length = max_length

  def __call__(self, texts):
    raise RuntimeError("the AOT check's T5 tokenizer is shape-only and cannot tokenize text")


def shape_only_text_encoder(text_config: ml_collections.ConfigDict,
                            t5_architecture: str) -> tuple[Any, Any] | None:
  """A T5 `(tokenizer, module)` without files for `text.kind='t5'` with no `text.t5_dir`.

  Returns None when the config builds its own encoder (another kind, or a `t5_dir` given).
  """
  if text_config.kind != "t5" or text_config.t5_dir:
    return None
  if t5_architecture not in T5_ARCHITECTURES:
    raise ValueError(f"--t5_architecture={t5_architecture!r}: choose one of "
                     f"{sorted(T5_ARCHITECTURES)}")
  t5_config = T5_ARCHITECTURES[t5_architecture]
  if text_config.width != t5_config.d_model:
    raise ValueError(f"text.width={text_config.width} but {t5_architecture} produces "
                     f"{t5_config.d_model}-dim embeddings (--t5_architecture)")
  text_config_lib.validate(text_config)  # as `make_text_encoder` does for real encoders
  return (ShapeOnlyTokenizer(text_config.max_length),
          text_factory.t5_module(t5_config, text_config))


def _torus_shape(chips: int, dims: int) -> tuple[int, ...]:
  """Cloud TPU slice shapes: 2x2, 2x4, 4x4, 4x8, ... and 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, ...

  Each doubling grows the smallest dimension; ties grow the last one, except below a 2x2x2
  cube, which fills x and y first (the 4-chip 3-D slice is 2x2x1).
  """
  shape = [1] * dims
  while math.prod(shape) < chips:
    low = min(shape)
    ties = [i for i, s in enumerate(shape) if s == low]
    grow = ties[0] if dims == 3 and math.prod(shape) < 8 else ties[-1]
    shape[grow] *= 2
  return tuple(shape)


def parse_topology(accelerator_type: str, num_slices: int = 1) -> Topology:
  """`'v5p-128'` -> Topology (v4/v5p count TensorCores, v5e/v6e count chips)."""
  m = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v5lite|v6e)-(\d+)", accelerator_type.strip().lower())
  if not m:
    raise ValueError(f"--topology={accelerator_type!r}: expected v4-N, v5p-N, v5e-N "
                     "(or v5litepod-N) or v6e-N, e.g. v5p-128 or v5e-256")
  if num_slices < 1:
    raise ValueError(f"--num_slices={num_slices} must be >= 1")
  generation = _ALIASES.get(m.group(1), m.group(1))
  chip = CHIPS[generation]
  count = int(m.group(2))
  if count % chip.cores_per_chip:
    raise ValueError(f"--topology={accelerator_type}: {generation}-N counts TensorCores "
                     f"({chip.cores_per_chip} per chip); N must be a multiple of "
                     f"{chip.cores_per_chip}")
  chips = count // chip.cores_per_chip
  if chips < 1 or chips & (chips - 1):
    raise ValueError(f"--topology={accelerator_type}: {chips} chips is not a power of two")
  if chip.dims == 3 and chips < 4:
    raise ValueError(f"--topology={accelerator_type}: the smallest {generation} slice has 4 "
                     f"chips ({generation}-{4 * chip.cores_per_chip})")
  return Topology(accelerator_type, chip, _torus_shape(chips, chip.dims), num_slices)


@dataclasses.dataclass
class FitReport:
  """What one device of the topology needs for one step (bytes are per device)."""
  topology: Topology
  mesh_shape: dict[str, int]
  global_batch_size: int
  param_bytes: int  # params (trainable + frozen)
  opt_bytes: int  # optimiser state
  ema_bytes: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  peak_bytes: int
  flops: float  # per device per step
  compile_seconds: float
  error: str = ""  # the compiler's RESOURCE_EXHAUSTED message, if it ran out of memory
  what: str = "train"  # 'train': one train step; 'sample': one guided denoising step
  sample_steps: int = 0  # denoising steps of one sample (config.diffusion.sample_steps)
  grad_accum_steps: int = 1  # microbatches per train step (config.optim.grad_accum_steps)
  stage_modality: str = "video"  # the stage's examples: 'video' clips or 'image's
  # Forward FLOPs per device of the splash attention kernels, which XLA's count omits
  # (`attention.count_splash_flops`); 0 where none were traced.
  splash_flops: float = 0.0
  bytes_accessed: float = 0.0  # HBM bytes read + written per device per step (cost analysis)
  # Bytes of the collectives' results per device per step, by kind (from the compiled HLO).
  collective_bytes: dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def hbm_bytes(self) -> int:
    return self.topology.chip.hbm_bytes

  @property
  def fits(self) -> bool:
    return not self.error and self.peak_bytes <= self.hbm_bytes

  @property
  def overflow_bytes(self) -> int:
    return max(0, self.peak_bytes - self.hbm_bytes)

  @property
  def total_flops(self) -> float:
    """XLA's FLOPs plus the splash kernels' (forward; a train step's backward kernels, about
    twice as many again, are not counted)."""
    return self.flops + self.splash_flops

  def step_seconds(self, utilisation: float = 1.0) -> float:
    return self.total_flops / (self.topology.chip.peak_flops * utilisation)

  def roofline_seconds(self) -> float:
    """max(FLOPs / peak FLOP/s, HBM bytes / HBM bandwidth): the step's time if it ran at
    whichever of the chip's two limits binds (collectives not counted)."""
    chip = self.topology.chip
    return max(self.total_flops / chip.peak_flops, self.bytes_accessed / chip.hbm_bandwidth)

  def roofline_mfu(self) -> float:
    """The model-FLOP utilisation the roofline time implies (1.0 when compute-bound)."""
    t = self.roofline_seconds()
    return self.step_seconds() / t if t else 0.0


def shard_bytes(tree: Any) -> int:
  """Bytes one device holds of the (sharded) arrays or ShapeDtypeStructs in `tree`."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def abstract_batch(setup: build_lib.StageSetup, mesh: jax.sharding.Mesh) -> dict:
  """The global batch as ShapeDtypeStructs with the data pipeline's sharding."""
  c = setup.config
  b = c.data.global_batch_size
  global_batch.check_batch_size(b, 1, mesh, c.data.batch_axes)
  return measure.abstract_batch(setup, b, global_batch.batch_sharding(mesh, c.data.batch_axes))


def _parse_size(text: str) -> int:
  m = re.fullmatch(r"([\d.]+)([KMGT]?)i?B?", text.strip())
  if not m:
    return 0
  scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[m.group(2)]
  return int(float(m.group(1)) * scale)


def _oom_bytes(message: str) -> tuple[int, int]:
  """(used, overflow) bytes from an XLA TPU RESOURCE_EXHAUSTED message (0 when absent)."""
  size = r"([\d.]+[KMGT]?)"
  # "Ran out of memory on HBM, the total memory required for HLO temporaries (59.00G) exceeds
  # available HBM (15.75G)."
  required = re.search(r"required for [^(]*\(" + size + r"\) exceeds available HBM \(" + size +
                       r"\)", message)
  if required:
    used, available = (_parse_size(g) for g in required.groups())
    return used, max(0, used - available)
  # "Used 20.50G of 15.75G hbm. Exceeded hbm capacity by 4.75G."
  used = re.search(r"Used " + size + " of " + size + " hbm", message)
  over = re.search(r"Exceeded hbm capacity by " + size, message)
  return (_parse_size(used.group(1)) if used else 0,
          _parse_size(over.group(1)) if over else 0)


def abstract_setup(config: ml_collections.ConfigDict, topology: Topology, stage: str,
                   t5_architecture: str):
  """`(setup, mesh, rules, state)` of `stage` on `topology`'s compile-only devices: the state
  as ShapeDtypeStructs with the mesh's shardings (nothing is initialised or compiled)."""
  setup = build_lib.build_stage(config, stages_lib.get_stage(stage),
                                text_encoder=shape_only_text_encoder(config.text, t5_architecture))
  mesh = mesh_lib.make_mesh(setup.config.mesh, topology.devices())
  rules = setup.rules
  state = setup.abstract_state(mesh)
  return setup, mesh, rules, state


def _compile_and_measure(jitted, args: tuple, mesh: jax.sharding.Mesh,
                         report: FitReport) -> FitReport:
  """Compiles `jitted(*args)` for the mesh's devices; fills the report's memory and FLOPs."""
  start = time.perf_counter()
  try:
    with attention_lib.count_splash_flops() as splash:
      compiled, report.compile_seconds = measure.compile_timed(jitted, args, mesh)
    report.splash_flops = sum(splash) / math.prod(mesh.shape.values())
  except Exception as e:  # pylint: disable=broad-except
    message = str(e)
    if "RESOURCE_EXHAUSTED" not in message and "Ran out of memory" not in message:
      raise
    used, over = _oom_bytes(message)
    report.error = message.strip().splitlines()[0][:500] if message.strip() else "OOM"
    report.peak_bytes = used or report.hbm_bytes + over
    report.compile_seconds = time.perf_counter() - start
    return report
  memory = measure.memory(compiled)
  report.argument_bytes = memory.argument_bytes
  report.output_bytes = memory.output_bytes
  report.alias_bytes = memory.alias_bytes
  report.temp_bytes = memory.temp_bytes
  report.peak_bytes = memory.peak_bytes
  report.flops = measure.flops(compiled)
  report.bytes_accessed = float(measure.cost_analysis(compiled).get("bytes accessed", 0.0))
  report.collective_bytes = hlo.bytes_by_kind(compiled.as_text())
  return report


def check_train_step(config: ml_collections.ConfigDict, topology: Topology,
                     stage: str = "video", t5_architecture: str = "t5-v1_1-xxl") -> FitReport:
  """Compiles the sharded train step of `stage` for `topology` and measures one device.

  `t5_architecture` names the frozen T5 encoder built when `text.kind='t5'` has no `t5_dir`.
  """
  setup, mesh, _, state = abstract_setup(config, topology, stage, t5_architecture)
  c = setup.config
  batch = abstract_batch(setup, mesh)
  shardings = jax.tree.map(lambda x: x.sharding, state)
  step = step_lib.jit_step(setup.step_fn(), shardings, {k: v.sharding for k, v in batch.items()},
                           mesh)
  report = FitReport(
      topology=topology, mesh_shape=dict(mesh.shape), global_batch_size=c.data.global_batch_size,
      stage_modality=setup.stage.modality,
      param_bytes=shard_bytes(state.params), opt_bytes=shard_bytes(state.opt_state),
      ema_bytes=shard_bytes(state.ema_params), argument_bytes=0, output_bytes=0, alias_bytes=0,
      temp_bytes=0, peak_bytes=0, flops=0.0, compile_seconds=0.0,
      grad_accum_steps=int(c.optim.get("grad_accum_steps", 1)))
  return _compile_and_measure(step.jitted, (state, batch), mesh, report)


def check_sample_step(config: ml_collections.ConfigDict, topology: Topology,
                      stage: str = "video", t5_architecture: str = "t5-v1_1-xxl",
                      batch_size: int = 0) -> FitReport:
  """Compiles one sharded denoising step of sampling and measures one device.

  The step is what `samplers.sample` repeats `diffusion.sample_steps` times: the U-Net on the
  guidance-doubled batch (conditional and null text) with the EMA weights, and the sampler's
  update. The text embeddings, computed once per sample, are inputs. `batch_size` clips are
  sampled at once (0: one per data-parallel device, the smallest batch the mesh takes).
  """
  from stunet.diffusion import guidance as guidance_lib  # pylint: disable=g-import-not-at-top
  from stunet.diffusion import samplers  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  setup, mesh, rules, state = abstract_setup(config, topology, stage, t5_architecture)
  c = setup.config
  dp = global_batch.data_parallel_size(mesh, c.data.batch_axes)
  b = batch_size or dp
  if b % dp:
    raise ValueError(f"--sample_batch={b} is not divisible by the data-parallel size {dp} "
                     f"(mesh {dict(mesh.shape)})")
  sharding = global_batch.batch_sharding(mesh, c.data.batch_axes)
  length = setup.tokenizer.max_length
  width = setup.text_width()
  params = state.ema_weights["unet"]
  x_t = jax.ShapeDtypeStruct((b,) + setup.example_shape, jnp.float32, sharding=sharding)
  emb = jax.ShapeDtypeStruct((b, length, width), jnp.float32, sharding=sharding)
  mask = jax.ShapeDtypeStruct((b, length), jnp.bool_, sharding=sharding)

  def denoise_step(unet_params, x_t, emb, mask, key):
    with nn.logical_axis_rules(rules):
      # The null text is a constant input of the step's shape (computed once per sample like
      # the captions' embeddings): zeros measure the same memory and FLOPs as the empty caption.
      null_emb, null_mask = guidance_lib.null_text(length, width)
      denoise = denoiser_lib.Denoiser(setup).fn(unet_params)

      # One step of the sampler from x_t at t = 1/2: the body samplers.sample loops over.
      return samplers.sample(key, denoise, x_t.shape, emb, mask, null_emb, null_mask,
                             config=c.diffusion, steps=1, x_init=x_t, t_start=0.5)

  jitted = jax.jit(denoise_step, out_shardings=sharding)
  report = FitReport(
      topology=topology, mesh_shape=dict(mesh.shape), global_batch_size=b,
      stage_modality=setup.stage.modality,
      param_bytes=shard_bytes(params), opt_bytes=0, ema_bytes=0, argument_bytes=0,
      output_bytes=0, alias_bytes=0, temp_bytes=0, peak_bytes=0, flops=0.0,
      compile_seconds=0.0, what="sample", sample_steps=int(c.diffusion.sample_steps))
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=sharding_lib.replicated(mesh))
  return _compile_and_measure(jitted, (params, x_t, emb, mask, key), mesh, report)


def _gib(n: float) -> str:
  if abs(n) < GIB:
    return f"{n / 1024**2:.2f} MiB"
  return f"{n / GIB:.2f} GiB"


def levers(report: FitReport, config: ml_collections.ConfigDict) -> list[str]:
  """What to change when the step does not fit, most effective first for this config."""
  out = []
  shape = report.mesh_shape
  fsdp, tensor = shape.get("fsdp", 1), shape.get("tensor", 1)
  n = math.prod(shape.values())
  state = report.param_bytes + report.opt_bytes + report.ema_bytes
  if fsdp * tensor < n:
    out.append(f"shard the state over more devices: --config.mesh.shape=(1,-1,1) puts all "
               f"{n} devices on fsdp (now {fsdp}); params+optimiser+EMA take {_gib(state)}")
  if report.what == "train" and not config.model.remat:
    out.append("rematerialise the blocks: --config.model.remat=True")
  elif report.what == "train" and config.model.get("remat_policy", "full") != "full":
    out.append(f"save nothing in the rematerialised blocks: --config.model.remat_policy=full "
               f"(now {config.model.remat_policy!r}; costs ~1.2x the FLOPs, "
               f"benchmarks/results/remat_policies_base.md)")
  if config.model.dtype != "bfloat16":
    out.append("compute in bfloat16: --config.model.dtype=bfloat16")
  b = report.global_batch_size
  context = shape.get("context", 1)
  data_parallel = n // (tensor * context)
  batch_flag = ("--sample_batch" if report.what == "sample" else
                "--config.data.global_batch_size")
  accum = report.grad_accum_steps if report.what == "train" else 1
  per_step = b // accum  # examples in one forward/backward pass
  if report.what == "train" and per_step >= 2 * data_parallel:
    out.append(f"accumulate gradients over twice as many microbatches: "
               f"--config.optim.grad_accum_steps={2 * accum} (the global batch of {b} stays; "
               f"now {per_step // data_parallel} clips per device per pass; activations scale "
               f"with it)")
  elif report.what != "train" and b >= 2 * data_parallel:
    out.append(f"halve the batch: {batch_flag}={b // 2} (now {b}, "
               f"{b // data_parallel} per data-parallel device; activations scale with it)")
  else:
    # One clip per device already: split each clip over several devices. Its frames over a
    # context axis (one-frame halos per temporal conv) where the frame count allows, else its
    # activation channels over a tensor axis (collectives in every layer).
    def keep_batch(split):
      new_dp = max(1, n // split)
      if report.what == "train" and b % new_dp == 0 and b > new_dp:
        return (f"--config.optim.grad_accum_steps={b // new_dp} (the global batch of {b} "
                f"stays, one clip per {split} devices per pass)")
      return f"{batch_flag}={new_dp}"
    frames = config.data.get("frames") if report.stage_modality == "video" else None
    c = context * 4
    if frames and frames % c == 0:
      out.append(f"split each clip's {frames} frames over {c} devices: --config.mesh.axes="
                 f"'(data,fsdp,context,tensor)' --config.mesh.shape='(1,-1,{c},{tensor})' with "
                 f"{keep_batch(c * tensor)} (levels whose frame count {c} divides are sharded "
                 f"over 'context'; the coarser ones are replicated)")
    t = tensor * 4
    axes = ("--config.mesh.shape=(1,-1,{t})".format(t=t) if "context" not in shape else
            f"--config.mesh.shape='(1,-1,{context},{t})'")
    out.append(f"split each clip over {t * context} devices: {axes} with "
               f"{keep_batch(t * context)} (activation channels are sharded over 'tensor'; "
               f"now {per_step // data_parallel} clip per device)")
  out.append("or a topology with more chips / more HBM per chip")
  return out


def format_report(report: FitReport, config: ml_collections.ConfigDict) -> str:
  t = report.topology
  mesh = ", ".join(f"{k}={v}" for k, v in report.mesh_shape.items())
  lines = [
      f"topology   {t.accelerator_type} x{t.num_slices} slice(s): {t.num_chips} chips "
      f"({t.topology_name}), mesh {mesh}, global batch {report.global_batch_size}"
      + (f" ({report.grad_accum_steps} microbatches of "
         f"{report.global_batch_size // report.grad_accum_steps})"
         if report.grad_accum_steps > 1 else ""),
  ]
  if report.what == "sample":
    lines += [
        f"step       one guided denoising step (x{report.sample_steps} per sample, "
        f"diffusion.sample_steps), batch {report.global_batch_size} clips",
        f"per device EMA params {_gib(report.param_bytes)}",
    ]
  else:
    lines.append(f"per device params {_gib(report.param_bytes)}, optimiser "
                 f"{_gib(report.opt_bytes)}, EMA {_gib(report.ema_bytes)}")
  if report.error:
    lines.append(f"compile    RESOURCE_EXHAUSTED after {report.compile_seconds:.0f} s: "
                 f"{report.error}")
  else:
    lines += [
        f"compile    {report.compile_seconds:.1f} s",
        f"memory     arguments {_gib(report.argument_bytes)}, outputs "
        f"{_gib(report.output_bytes)} (aliased {_gib(report.alias_bytes)}), temporaries "
        f"{_gib(report.temp_bytes)}",
        f"flops      {report.flops:.4g} per device per step (XLA's count)"
        + (f" + {report.splash_flops:.4g} in splash attention kernels (counted at trace time, "
           "forward only)" if report.splash_flops else ""),
        f"step time  {report.step_seconds():.4g} s at peak bf16 "
        f"({t.chip.peak_flops / 1e12:.0f} TFLOP/s per chip), "
        f"{report.step_seconds(0.5):.4g} s at 50%",
        f"hbm bytes  {report.bytes_accessed:.4g} accessed per device per step",
        "collectives " + ", ".join(f"{k} {_gib(v)}" for k, v in report.collective_bytes.items())
        + " per device per step (result bytes in the compiled HLO)",
        f"roofline   {report.roofline_seconds():.4g} s = max(FLOPs / peak, bytes / "
        f"{t.chip.hbm_bandwidth / 1e9:.0f} GB/s HBM), implied MFU "
        f"{100 * report.roofline_mfu():.1f}% (derived; collectives not counted)",
    ]
    if report.what == "sample":
      lines.append(f"sample     {report.sample_steps * report.step_seconds():.4g} s at peak, "
                   f"{report.sample_steps * report.step_seconds(0.5):.4g} s at 50% for "
                   f"{report.sample_steps} steps (text encoding excluded)")
  at_least = "at least " if report.error else ""
  lines.append(f"peak       {at_least}{_gib(report.peak_bytes)} of {_gib(report.hbm_bytes)} HBM "
               f"({100 * report.peak_bytes / report.hbm_bytes:.0f}%)")
  if report.fits:
    lines.append("fits       yes")
  else:
    over = report.overflow_bytes
    lines.append(f"fits       NO: over by {_gib(over)}" if over else "fits       NO")
    lines += [f"lever      {l}" for l in levers(report, config)]
  return "\n".join(lines)
