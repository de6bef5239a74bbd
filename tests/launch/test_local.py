"""launch/local.py: a 2-process x 2-device run of experiments.train on this machine."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.train.conftest import data_dir  # noqa: F401  (session fixture: shapes_video/tiny)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "launch"))  # as when local.py runs as a script
_spec = importlib.util.spec_from_file_location("launch_local",
                                               os.path.join(ROOT, "launch", "local.py"))
local = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local)

# The tiny config's t2i stage with two levels (as tests/train does), 3 steps, one checkpoint.
# Every run of this file has the same learning-rate schedule, whatever its number of steps, so
# that runs on the same devices compile the same train step (the session's compilation cache
# serves the later ones).
_SCHEDULE = ["--config.optim.warmup_steps=1", "--config.optim.decay_steps=3"]
_MODEL = ["--config.model.channel_mult=(1,2)", "--config.model.num_res_blocks=(1,1)",
          "--config.model.attention_levels=(False,True)", "--config.model.num_heads=(2,2)",
          "--config.model.temporal_factors=(2,)"]


def _train_args(workdir, data_dir, *extra):
  return ["--config=experiments/configs/tiny.py", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", "--config.stages=t2i",
          "--config.log.num_samples=0", "--config.log.every_steps=1",
          "--config.stage.t2i.num_steps=3", "--config.ckpt.every_steps=3",
          "--config.log.progress_bar=False", "--config.text.on_truncation=silent", *_MODEL,
          *_SCHEDULE, *extra]


def test_process_env_and_command():
  env = local.process_env({"HOME": "/h"}, 1234, 2, 1)
  assert env["STUNET_COORDINATOR"] == "localhost:1234"
  assert env["STUNET_NUM_PROCESSES"] == "2" and env["STUNET_PROCESS_ID"] == "1"
  assert env["HOME"] == "/h"
  cmd = local.process_command(2, ["--workdir=w"])
  assert cmd[1:] == ["-m", "experiments.train", "--cpu_devices=2", "--workdir=w"]


@pytest.fixture(autouse=True, scope="module")
def _clean_env():
  # The session's XLA_FLAGS force 8 host devices; the processes set their own device count
  # (--cpu_devices) but keep the fast-compile flags.
  saved = os.environ.get("XLA_FLAGS")
  os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                             "--xla_llvm_disable_expensive_passes=true")
  yield
  if saved is None:
    os.environ.pop("XLA_FLAGS", None)
  else:
    os.environ["XLA_FLAGS"] = saved


def _restore_params(workdir, step):
  """The run's checkpoint restored in this (single) process on one device, as numpy."""
  from stunet.parallel import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from stunet.train import build  # pylint: disable=g-import-not-at-top
  from stunet.train import checkpoint  # pylint: disable=g-import-not-at-top
  from stunet.train import stages  # pylint: disable=g-import-not-at-top
  from stunet.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from tests.train.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(two_levels=True, mesh_shape=(1, 1, 1))
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  setup = build.build_stage(config, stages.get_stage("t2i"))
  target = state_lib.abstract_state(setup.boxed_init, mesh, config.mesh.rules,
                                    jax.random.key(0))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "t2i", "checkpoints"), config.ckpt,
                                 read_only=True)
  state = ckpt.restore(step, target)
  ckpt.close()
  assert int(state.step) == step
  return jax.tree.map(np.asarray, jax.device_get(state.params))


def _run(tmp_path_factory, data_dir, num_processes, devices_per_process, *extra):
  workdir = tmp_path_factory.mktemp(f"run{num_processes}x{devices_per_process}")
  code = local.main([f"--num_processes={num_processes}",
                     f"--devices_per_process={devices_per_process}", "--",
                     *_train_args(workdir, data_dir, *extra)])
  logs = {i: (workdir / "logs" / f"process_{i}.log").read_text() for i in range(num_processes)}
  assert code == 0, logs
  return workdir, logs


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory, data_dir):
  # With end-of-stage samples: every process samples, process 0 writes them.
  return _run(tmp_path_factory, data_dir, 2, 2, "--config.log.num_samples=2",
              "--config.diffusion.sample_steps=2")


@pytest.fixture(scope="module")
def one_by_four(tmp_path_factory, data_dir):
  return _run(tmp_path_factory, data_dir, 1, 4)


def _losses(workdir):
  records = [json.loads(l) for l in (workdir / "t2i" / "metrics.jsonl").read_text().splitlines()]
  return [r["step"] for r in records], np.array([r["loss"] for r in records])


@pytest.mark.slow
def test_two_processes_train_and_checkpoint(two_by_two):
  workdir, logs = two_by_two
  for i in range(2):
    assert "stage t2i: step 3 (done)" in logs[i]
  # Metrics are written once (process 0), one record per step, all finite.
  steps, losses = _losses(workdir)
  assert steps == [1, 2, 3]
  assert np.all(np.isfinite(losses))
  # One checkpoint, written by both processes together.
  assert sorted(p.name for p in (workdir / "t2i" / "checkpoints").iterdir()
                if p.name.isdigit()) == ["3"]
  assert (workdir / "t2i" / "samples" / "3" / "grid.png").is_file()


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(two_by_two, one_by_four):
  # The global batches do not depend on the process count (per-process rows of one global
  # sequence) and the step's randomness does not depend on the process: same run.
  _, losses2 = _losses(two_by_two[0])
  _, losses1 = _losses(one_by_four[0])
  np.testing.assert_allclose(losses2, losses1, rtol=0, atol=1e-5)
  # Both checkpoints restore in this single process (onto one device).
  params2 = _restore_params(two_by_two[0], 3)
  params1 = _restore_params(one_by_four[0], 3)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5), params2,
               params1)


@pytest.mark.slow
def test_sigterm_to_one_process_checkpoints_both_at_one_step(tmp_path, data_dir):
  # The processes the launcher would start (two devices each: the 2x2 run's train step, which
  # the compilation cache holds), started here so that one of them can be signalled.
  workdir = tmp_path / "run"
  args = _train_args(workdir, data_dir, "--config.stage.t2i.num_steps=10000",
                     "--config.ckpt.every_steps=10000")
  port = local.free_port()
  procs = [subprocess.Popen(local.process_command(2, args), cwd=ROOT,
                            env=local.process_env(os.environ, port, 2, i),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    metrics_log = workdir / "t2i" / "metrics.jsonl"
    deadline = time.time() + 300
    while (not metrics_log.exists() and all(p.poll() is None for p in procs)
           and time.time() < deadline):
      time.sleep(0.05)
    assert metrics_log.exists(), "the run did not reach its first step"
    procs[1].send_signal(signal.SIGTERM)  # only process 1 is told (TPU maintenance)
    outs = [p.communicate(timeout=300)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  stopped = [int(re.search(r"stage t2i: step (\d+) \(preempted\)", out).group(1))
             for out in outs]
  assert stopped[0] == stopped[1] < 10000  # both stopped at the same step boundary
  # One checkpoint, of that step, written by both processes together; it restores here.
  assert [p.name for p in (workdir / "t2i" / "checkpoints").iterdir()
          if p.name.isdigit()] == [str(stopped[0])]
  _restore_params(workdir, stopped[0])


@pytest.mark.slow
def test_failure_exit_code_propagates(tmp_path, data_dir):
  # An unknown stage fails at start-up on every process, before any collective.
  code = local.main(["--num_processes=2", "--devices_per_process=1",
                     f"--logdir={tmp_path / 'logs'}", "--",
                     *_train_args(tmp_path / "run", data_dir, "--config.stages=nope")])
  assert code != 0
  log = (tmp_path / "logs" / "process_0.log").read_text()
  assert "unknown stage 'nope'" in log
