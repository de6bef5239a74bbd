"""benchmarks/train_state.py: the train state's parts per chip and per checkpoint (no compile).

Runs the script for a TPU slice in a subprocess (it needs libtpu's compile-only devices, the
`tpu` extra) with a small frozen T5, in float32 and in bfloat16 (`text.t5_dtype`).
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.benchmarks.conftest import ROOT

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="needs libtpu: pip install -e .[tpu]")


def _rows(t5_dtype: str) -> dict[str, tuple[float, float]]:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  r = subprocess.run(
      [sys.executable, "-m", "benchmarks.train_state", "--config=experiments/configs/tiny.py",
       "--topology=v5e-4", "--config.text.kind=t5", "--config.text.width=512",
       "--t5_architecture=t5-v1_1-small", f"--config.text.t5_dtype={t5_dtype}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  rows = {}
  for name, per_chip, total in re.findall(r"^\| ([^|]+?) \| ([\d,.]+) \| ([\d,.]+) \|$",
                                          r.stdout, re.M):
    rows[name] = (float(per_chip.replace(",", "")), float(total.replace(",", "")))
  return rows


@needs_libtpu
def test_frozen_leaves_have_no_ema_and_checkpoints_leave_out_the_pretrained_text():
  rows = _rows("float32")
  total = {name: t for name, (_, t) in rows.items()}
  tol = 0.05  # MiB: rounding of the printed parts
  assert total["EMA"] == pytest.approx(total["params: trainable"], abs=tol)
  params = (total["params: trainable"] + total["params: frozen U-Net"]
            + total["params: frozen text encoder"])
  assert total["train state"] == pytest.approx(
      params + total["optimiser moments"] + total["EMA"], abs=tol)
  assert total["checkpoint (written)"] == pytest.approx(
      total["train state"] - total["params: frozen text encoder"], abs=tol)
  assert total["params: frozen text encoder"] > 10 * total["params: frozen U-Net"] > 0
  # Every part is sharded over the slice's 4 chips or replicated: never more than the total.
  assert all(chip <= t + tol for chip, t in rows.values())
  # bfloat16 halves the frozen T5 and nothing else.
  half = {name: t for name, (_, t) in _rows("bfloat16").items()}
  assert half["params: frozen text encoder"] == pytest.approx(
      total["params: frozen text encoder"] / 2, abs=tol)
  assert half["checkpoint (written)"] == pytest.approx(total["checkpoint (written)"], abs=tol)
