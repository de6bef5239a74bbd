"""Tests for the per-stage metrics log (`stunet.train.metrics.MetricsWriter`)."""

import time

from stunet.train import metrics


def _writer(directory, start):
  return metrics.MetricsWriter(str(directory), start_step=start, num_steps=10, active=True,
                               tensorboard=False, progress_bar=False)


def test_elapsed_time_is_logged_and_continues_over_a_resume(tmp_path):
  writer = _writer(tmp_path, 0)
  time.sleep(0.05)
  out = writer.write([(1, {"loss": 1.0}), (2, {"loss": 0.5})])
  assert "elapsed_s" not in out[0] and out[1]["elapsed_s"] >= 0.05
  assert out[1]["steps_per_sec"] > 0
  time.sleep(0.02)
  third = writer.write([(3, {"loss": 0.4})])[0]["elapsed_s"]
  assert third >= out[1]["elapsed_s"] + 0.02
  writer.close()

  # Resume from step 2: the record of step 3 is dropped, the clock continues from step 2's.
  resumed = _writer(tmp_path, 2)
  record = resumed.write([(3, {"loss": 0.3})])[0]
  assert record["elapsed_s"] >= out[1]["elapsed_s"]
  assert record["elapsed_s"] < third + 1.0
  logged = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
  assert [r["step"] for r in logged] == [1, 2, 3]
  assert logged[-1]["loss"] == 0.3
