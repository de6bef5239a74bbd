"""Shared pieces of the benchmarks: machine description, peak FLOP/s, tables and reports.
XLA's analyses of a compiled step and timing are `stunet.train.measure`.

Wall-clock numbers on shared machines are noisy, so the benchmarks lean on what XLA itself
reports for a compiled computation (`cost_analysis` FLOPs, `memory_analysis` bytes) and on
ratios measured within one run. The achieved-FLOP/s denominator on CPU is a float32 matmul
timed in the same process (`measure_matmul_peak`); on TPU/GPU it is the vendor's dense bf16
peak for the device kind (`BF16_PEAK_TFLOPS`).
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# Dense (no sparsity) bf16 peak TFLOP/s per chip by `jax.Device.device_kind`, from the
# vendors' spec sheets. Keys are matched as prefixes of the reported device kind.
BF16_PEAK_TFLOPS = {
    "TPU v2": 45.0,
    "TPU v3": 123.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,  # v5e
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v5": 459.0,  # v5p reports "TPU v5"
    "TPU v6 lite": 918.0,  # v6e (Trillium)
    "TPU v6e": 918.0,
    "NVIDIA H200": 989.0,
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100": 989.0,  # SXM
    "NVIDIA A100": 312.0,
    "NVIDIA L4": 121.0,
    "NVIDIA A10G": 70.0,
}


def machine_info() -> str:
  """CPU model, cores, OS, JAX version and the default backend's devices."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  device = jax.devices()[0]
  return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"jax {jax.__version__}, {device.platform} ({device.device_kind}) "
          f"x{jax.device_count()}")


def table_peak_flops(device: jax.Device | None = None) -> float | None:
  """Dense bf16 peak FLOP/s of an accelerator from `BF16_PEAK_TFLOPS`, None if unknown/CPU."""
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return None
  kind = device.device_kind
  for prefix in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
    if kind.startswith(prefix):
      return BF16_PEAK_TFLOPS[prefix] * 1e12
  return None


def measure_matmul_peak(size: int = 2048, dtype=jnp.float32, repeats: int = 10) -> float:
  """FLOP/s of the fastest of `repeats` square `size` matmuls (the CPU MFU denominator)."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def device_peak(measured_cpu_peak: Callable[[], float] = measure_matmul_peak
                ) -> tuple[float, str]:
  """`(peak FLOP/s, how it was obtained)` for the default device."""
  peak = table_peak_flops()
  if peak is not None:
    return peak, f"bf16 table peak for {jax.devices()[0].device_kind}"
  return measured_cpu_peak(), "float32 2048x2048 matmul measured in this run"


def si(value: float, unit: str = "") -> str:
  """`1.23e9 -> '1.23 G'` style formatting for tables."""
  for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(value) >= scale:
      return f"{value / scale:.3g} {prefix}{unit}"
  return f"{value:.3g} {unit}".strip()


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


NOISY_MACHINE_NOTE = ("Wall-clock numbers on a small CPU machine vary between runs (up to ~2x "
                      "when it is shared with other jobs); ratios measured in one run and XLA's "
                      "FLOP/byte counts are the reliable parts.")


def write_report(text: str, path: str) -> None:
  """Writes a benchmark's markdown report to `path` (creating its folder); '' writes nothing."""
  if path:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
