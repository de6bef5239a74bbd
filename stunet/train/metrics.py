"""Training metrics on process 0: `metrics.jsonl`, TensorBoard events and a progress bar.

`metrics.jsonl` holds one JSON object per logged step (`{"step": s, "loss": ...}`); floats are
written with full precision, so a resumed run's losses can be compared bitwise. On resume the
lines past the restored step are dropped (the interrupted run may have logged steps its last
checkpoint does not contain), keeping the file consistent with the checkpoint. TensorBoard
event files are written with tensorboardX (no TensorFlow needed) when it is installed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

from absl import logging
import tqdm

try:
  import tensorboardX
except ImportError:  # optional: metrics.jsonl is always written
  tensorboardX = None


def truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records with `step > last_step` from a metrics file (no-op if absent)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip()]
  kept = [l for l in lines if json.loads(l).get("step", 0) <= last_step]
  if len(kept) != len(lines):
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


class MetricsWriter:
  """Writes metrics of one stage; inactive (no files, no bar) on processes other than 0."""

  def __init__(self, directory: str, *, start_step: int, num_steps: int, active: bool,
               tensorboard: bool = True, progress_bar: bool = True, desc: str = ""):
    self.active = active
    self.path = os.path.join(directory, "metrics.jsonl")
    self._tb = None
    self._bar = None
    self._last_time = time.perf_counter()
    self._last_step = start_step
    # Training wall-clock of the stage so far (`elapsed_s` in the records): a resumed stage
    # continues from the last logged value, so learning curves can be drawn against time.
    self._elapsed = 0.0
    if not active:
      return
    os.makedirs(directory, exist_ok=True)
    truncate_jsonl(self.path, start_step)
    if os.path.exists(self.path):
      logged = [r["elapsed_s"] for r in read_jsonl(self.path) if "elapsed_s" in r]
      self._elapsed = logged[-1] if logged else 0.0
    if tensorboard:
      if tensorboardX is None:
        logging.warning("tensorboardX is not installed; no TensorBoard events are written")
      else:
        self._tb = tensorboardX.SummaryWriter(os.path.join(directory, "tensorboard"))
    if progress_bar:
      self._bar = tqdm.tqdm(total=num_steps, initial=start_step, desc=desc, dynamic_ncols=True)

  def write(self, records: list[tuple[int, Mapping[str, float]]]) -> list[dict]:
    """Logs `(step, scalars)` records fetched together; the last gets `steps_per_sec` over
    the window since the previous call (per-record rates would time the fetch, not steps) and
    `elapsed_s`, the stage's training wall-clock so far (compiles and checkpoint writes
    included, accumulated over resumes)."""
    if not records:
      return []
    now = time.perf_counter()
    out = [{"step": int(s), **{k: float(v) for k, v in m.items()}} for s, m in records]
    last = out[-1]["step"]
    self._elapsed += now - self._last_time
    if last > self._last_step:
      out[-1]["steps_per_sec"] = (last - self._last_step) / max(now - self._last_time, 1e-9)
    out[-1]["elapsed_s"] = self._elapsed
    if self.active:
      with open(self.path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in out)
      if self._tb is not None:
        for r in out:
          for k, v in r.items():
            if k != "step":
              self._tb.add_scalar(k, v, r["step"])
      if self._bar is not None:
        self._bar.update(last - self._last_step)
        post = {"loss": f"{out[-1].get('loss', float('nan')):.4f}"}
        if "steps_per_sec" in out[-1]:
          post["steps/s"] = f"{out[-1]['steps_per_sec']:.2f}"
        self._bar.set_postfix(post)
    self._last_time, self._last_step = now, last
    return out

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._bar is not None:
      self._bar.close()
