"""Measuring a stage's compiled step: one kit for the AOT fit check (`stunet.apps.aot`), the
ablation (`stunet.eval.ablation`) and the benchmarks (`benchmarks/`).

- `abstract_batch`: the batch a stage's step takes, as ShapeDtypeStructs (no data needed).
- `random_like`: concrete arrays of abstract shapes and shardings, for timing.
- `param_counts`: parameters in total, trainable, of the U-Net (spatial / temporal) and of the
  text encoder.
- `compile_timed`; `flops`, `cost_analysis` (from `stunet.parallel.hlo`, where the model
  summary reads them too) and `memory` (`MemoryUse`): XLA's own cost and memory analysis of a
  compiled computation.
- `median_seconds`: the median wall time of a call.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from stunet.nn import summary
from stunet.parallel import hlo
from stunet.train import build as build_lib
from stunet.train import optimizer as optimizer_lib


def abstract_batch(setup: build_lib.StageSetup, batch_size: int,
                   sharding: jax.sharding.Sharding | None = None) -> dict:
  """A global batch of `setup`'s stage as ShapeDtypeStructs, with the pipeline's dtypes
  (`stunet.data.pipeline`: uint8 pixels, int32 ids, bool mask)."""
  length = setup.tokenizer.max_length
  return {
      setup.stage.modality: jax.ShapeDtypeStruct((batch_size,) + setup.example_shape,
                                                 jnp.uint8, sharding=sharding),
      "text_ids": jax.ShapeDtypeStruct((batch_size, length), jnp.int32, sharding=sharding),
      "text_mask": jax.ShapeDtypeStruct((batch_size, length), jnp.bool_, sharding=sharding),
  }


def random_like(abstract: Any, seed: int = 0) -> Any:
  """Arrays of `abstract`'s shapes, dtypes and shardings: floats in [0, 0.01), other dtypes 0.

  Step time does not depend on the values; non-negative floats keep Adam's second moments
  valid. Built on the host, then placed with each leaf's sharding.
  """
  rng = np.random.default_rng(seed)

  def leaf(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
      value = (0.01 * rng.random(x.shape, np.float32)).astype(x.dtype)
    else:
      value = np.zeros(x.shape, x.dtype)
    return jax.device_put(value, x.sharding)
  return jax.tree.map(leaf, abstract)


def param_counts(params: Any, labels: Any) -> dict[str, int]:
  """Parameter counts of a stage's `params` (`{'unet': ..., 'text': ...}`, boxed or not).

  `labels` is the stage's optimiser labels (`StageSetup.labels`): 'trainable' counts the
  parameters the optimiser updates. 'unet_spatial' / 'unet_temporal' split the U-Net by
  `stunet.nn.inflate.label_params`; 'text' is the text encoder; 'all' is everything.
  """
  unet = summary.count_params(params["unet"])
  sizes = jax.tree.map(lambda x: int(np.prod(x.shape)), params)
  trainable = jax.tree.map(lambda l, n: n if l == optimizer_lib.TRAIN else 0, labels, sizes)
  return {"all": sum(jax.tree.leaves(sizes)), "trainable": sum(jax.tree.leaves(trainable)),
          "unet": unet["total"], "unet_spatial": unet["spatial"],
          "unet_temporal": unet["temporal"],
          "text": sum(jax.tree.leaves(sizes.get("text", {})))}


def compile_timed(jitted: Any, args: tuple, mesh: jax.sharding.Mesh) -> tuple[Any, float]:
  """`(compiled, seconds)`: `jitted` lowered for `args` (abstract or concrete) under `mesh`."""
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


# XLA's cost analysis lives with the HLO readers (`stunet.parallel.hlo`), where the model
# summary below this layer reads it too; the kit names the same functions.
cost_analysis = hlo.cost_analysis
flops = hlo.flops


@dataclasses.dataclass(frozen=True)
class MemoryUse:
  """One device's bytes during one call, from XLA's memory analysis."""

  argument_bytes: int
  output_bytes: int
  alias_bytes: int  # outputs that reuse (donated) argument buffers
  temp_bytes: int
  compiler_peak_bytes: int  # the backend's own peak; 0 where it reports none

  @property
  def live_bytes(self) -> int:
    """Arguments + outputs - aliases + temporaries: every buffer of the call at once."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

  @property
  def peak_bytes(self) -> int:
    # The compiler's peak can leave out live arguments (the CPU backend's leaves out the
    # temporaries); the sum of the buffers bounds it, comparably across backends.
    return max(self.compiler_peak_bytes, self.live_bytes)


def memory(compiled: Any) -> MemoryUse:
  m = compiled.memory_analysis()
  return MemoryUse(argument_bytes=int(m.argument_size_in_bytes),
                   output_bytes=int(m.output_size_in_bytes),
                   alias_bytes=int(m.alias_size_in_bytes),
                   temp_bytes=int(m.temp_size_in_bytes),
                   compiler_peak_bytes=int(getattr(m, "peak_memory_in_bytes", 0) or 0))


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
  """Median wall time of `fn()`, which must block until its result is ready; the `warmup`
  calls before (one-off allocation, autotuning) are not counted."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
