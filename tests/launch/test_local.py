"""launch/local.py: a 2-process x 2-device run of experiments.train on this machine."""

import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("launch_local",
                                               os.path.join(ROOT, "launch", "local.py"))
local = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local)

# The tiny config's t2i stage with two levels (as tests/train does), 3 steps, one checkpoint.
_MODEL = ["--config.model.channel_mult=(1,2)", "--config.model.num_res_blocks=(1,1)",
          "--config.model.attention_levels=(False,True)", "--config.model.num_heads=(2,2)",
          "--config.model.temporal_factors=(2,)"]


def _train_args(workdir, data_dir, *extra):
  return ["--config=experiments/configs/tiny.py", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", "--config.stages=t2i",
          "--config.log.num_samples=0", "--config.log.every_steps=1",
          "--config.stage.t2i.num_steps=3", "--config.ckpt.every_steps=3",
          "--config.log.progress_bar=False", "--config.text.on_truncation=silent", *_MODEL,
          *extra]


def test_process_env_and_command():
  env = local.process_env({"HOME": "/h"}, 1234, 2, 1)
  assert env["STUNET_COORDINATOR"] == "localhost:1234"
  assert env["STUNET_NUM_PROCESSES"] == "2" and env["STUNET_PROCESS_ID"] == "1"
  assert env["HOME"] == "/h"
  cmd = local.process_command(2, ["--workdir=w"])
  assert cmd[1:] == ["-m", "experiments.train", "--cpu_devices=2", "--workdir=w"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  from stunet.data import shapes_video
  root = tmp_path_factory.mktemp("tfds")
  shapes_video.ShapesVideo(config="tiny", data_dir=str(root)).download_and_prepare()
  return str(root)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)


@pytest.mark.slow
def test_two_processes_train_and_checkpoint(tmp_path, data_dir):
  workdir = tmp_path / "run"
  code = local.main(["--num_processes=2", "--devices_per_process=2", "--",
                     *_train_args(workdir, data_dir)])
  logs = {i: (workdir / "logs" / f"process_{i}.log").read_text() for i in range(2)}
  assert code == 0, logs
  for i in range(2):
    assert "stage t2i: step 3 (done)" in logs[i]
  # Metrics are written once (process 0), one record per step, all finite.
  records = [json.loads(l) for l in (workdir / "t2i" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3]
  assert np.all(np.isfinite([r["loss"] for r in records]))
  assert (workdir / "t2i" / "checkpoints" / "3").is_dir()


@pytest.mark.slow
def test_failure_exit_code_propagates(tmp_path, data_dir):
  # An unknown stage fails at start-up on every process, before any collective.
  code = local.main(["--num_processes=2", "--devices_per_process=1",
                     f"--logdir={tmp_path / 'logs'}", "--",
                     *_train_args(tmp_path / "run", data_dir, "--config.stages=nope")])
  assert code != 0
  log = (tmp_path / "logs" / "process_0.log").read_text()
  assert "unknown stage 'nope'" in log
