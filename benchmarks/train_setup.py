"""The library's real train step, built for a benchmark shape on one device.

`TrainStepSetup` resolves an experiment config (`tiny`, `demo`, `base`, ...) with overrides of
the video size, batch, dtype and any `model.*` field, builds the stage exactly as
`experiments/train.py` does (`stunet.train.build.build_stage`), and lowers the jitted step
(`stunet.train.step.jit_step`) on a one-device mesh. Lowering and compiling need only
abstract shapes (`compile_abstract`), so XLA's cost and memory analyses work for sizes that
would not run here; `init_state` / `make_batch` produce concrete inputs for timing.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from stunet.data import global_batch
from stunet.parallel import mesh as mesh_lib
from stunet.train import build
from stunet.train import measure
from stunet.train import stages
from stunet.train import state as state_lib
from stunet.train import step as step_lib

CAPTION = "a red circle moves left over a blue square"

# `--quick` runs: the tiny config cut to two levels (one spatial and one temporal
# down-sampling, attention at the coarser level): the same kinds of layers, less to compile.
QUICK_MODEL = dict(channel_mult=(1, 2), num_res_blocks=(1, 1), attention_levels=(False, True),
                   num_heads=(2, 2), temporal_factors=(2,))


def parse_case(case: str) -> tuple[str, int, int, dict]:
  """'demo:16x32x32' -> ('demo', 16, 32, {}); a third part sets model fields for an A/B,
  e.g. 'demo:16x32x32:temporal_conv_impl=conv' -> (..., {'temporal_conv_impl': 'conv'})."""
  parts = case.split(":")
  try:
    name, size = parts[:2]
    frames, height, width = (int(v) for v in size.lower().split("x"))
    overrides = dict(kv.split("=", 1) for kv in parts[2].split(",")) if len(parts) > 2 else {}
  except ValueError as e:
    raise ValueError(f"case {case!r} must look like config:TxHxW[:field=value,...], e.g. "
                     "demo:16x32x32") from e
  if height != width or len(parts) > 3:
    raise ValueError(f"case {case!r}: frames must be square (H = W), at most 3 ':' parts")
  return name, frames, height, overrides


def load_config(name: str) -> ml_collections.ConfigDict:
  """`experiments/configs/<name>.py`'s config."""
  return importlib.import_module(f"experiments.configs.{name}").get_config()


def benchmark_config(name: str, *, frames: int, resolution: int, batch: int,
                     dtype: str | None = None, remat: bool | None = None,
                     **model_overrides) -> ml_collections.ConfigDict:
  """Config `name` at video size `batch x frames x resolution^2`, one-device mesh."""
  c = load_config(name)
  c.data.frames, c.data.resolution, c.data.global_batch_size = frames, resolution, batch
  if dtype is not None:
    c.model.dtype = dtype
  if remat is not None:
    c.model.remat = remat
  for key, value in model_overrides.items():
    if key not in c.model:
      raise ValueError(f"unknown model field {key!r} in benchmark overrides")
    c.model[key] = value
  c.mesh.shape = (1, 1, 1)
  c.text.on_truncation = "silent"
  return c


@dataclasses.dataclass
class TrainStepSetup:
  """A stage's jitted train step on one device, for config `config`."""

  config: ml_collections.ConfigDict
  stage_name: str = "video"

  def __post_init__(self):
    self.setup = build.build_stage(self.config, stages.get_stage(self.stage_name))
    self.mesh = mesh_lib.make_mesh(self.config.mesh, jax.devices()[:1])
    self.rules = self.setup.rules
    self.batch_sharding = global_batch.batch_sharding(self.mesh, self.config.data.batch_axes)
    keys = (self.setup.stage.modality, "text_ids", "text_mask")
    self.state_shardings = state_lib.state_shardings(
        self.setup.boxed_abstract_state, self.mesh, self.rules)
    self.step = step_lib.jit_step(self.setup.step_fn(), self.state_shardings,
                                  {k: self.batch_sharding for k in keys}, self.mesh)
    self.compiled = None
    self.compile_seconds = float("nan")

  @property
  def batch_size(self) -> int:
    return int(self.config.data.global_batch_size)

  @property
  def frames(self) -> int:
    return int(self.config.data.frames)

  def abstract_state(self):
    return self.setup.abstract_state(self.mesh)

  def abstract_batch(self) -> dict:
    return measure.abstract_batch(self.setup, self.batch_size, self.batch_sharding)

  def compile_abstract(self):
    """Lowers and compiles the step for abstract inputs; returns the compiled executable."""
    self.compiled, self.compile_seconds = measure.compile_timed(
        self.step.jitted, (self.abstract_state(), self.abstract_batch()), self.mesh)
    return self.compiled

  def init_state(self) -> Any:
    state, _ = state_lib.create_sharded_state(self.setup.boxed_init, self.mesh, self.rules,
                                              jax.random.key(0),
                                              boxed_abstract=self.setup.boxed_abstract_state)
    return state

  def make_batch(self, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    b = self.batch_size
    ids, mask = self.setup.tokenizer([CAPTION] * b)
    pixels = rng.integers(0, 256, (b,) + self.setup.example_shape, dtype=np.uint8)
    batch = {self.setup.stage.modality: pixels, "text_ids": np.asarray(ids, np.int32),
             "text_mask": np.asarray(mask, bool)}
    return {k: jax.device_put(v, self.batch_sharding) for k, v in batch.items()}

  def run_steps(self, state: Any, batch: dict, steps: int) -> tuple[Any, list[float]]:
    """Runs `steps` compiled steps (the state is donated); returns (state, per-step seconds)."""
    if self.compiled is None:
      self.compile_abstract()
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      with jax.set_mesh(self.mesh):
        state, metrics = self.compiled(state, batch)
      jax.block_until_ready(metrics["loss"])
      times.append(time.perf_counter() - start)
    return state, times
