"""End-to-end runs of `experiments.train` in subprocesses: exact resume after SIGKILL,
SIGTERM preemption, NaN stop, refused incompatible resume.

Each run is the test model's t2i stage (tests/train/conftest.py) on 2 CPU devices, 12 steps, checkpoints every 4. The
runs share a persistent compilation cache, so only the first one compiles the step.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from stunet.parallel import mesh as mesh_lib
from stunet.train import build
from stunet.train import checkpoint
from stunet.train import metrics
from stunet.train import stages
from stunet.train import state as state_lib
from tests.train.conftest import MODEL_FLAGS
from tests.train.conftest import tiny_config

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, EVERY = 12, 4


def _command(workdir, data_dir, *extra):
  return [sys.executable, "-m", "experiments.train", "--config=experiments/configs/tiny.py",
          f"--workdir={workdir}", "--cpu_devices=2", f"--config.data.data_dir={data_dir}",
          "--config.stages=t2i", "--config.log.num_samples=0", "--config.log.every_steps=1",
          f"--config.ckpt.every_steps={EVERY}", "--config.ckpt.keep_last=10",
          f"--config.stage.t2i.num_steps={STEPS}", "--config.log.progress_bar=False",
          "--config.text.on_truncation=silent", *MODEL_FLAGS, *extra]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  e = dict(os.environ)
  # Not the session's 8 forced host devices (the run sets its own with --cpu_devices), but
  # the session's fast-compile flags.
  e.update(XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
           JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return e


def _run(args, env, timeout=600):
  return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def _losses(workdir):
  return {r["step"]: r["loss"] for r in
          metrics.read_jsonl(os.path.join(workdir, "t2i", "metrics.jsonl"))}


def _restore(workdir, step):
  config = tiny_config(two_levels=True)
  config.mesh.shape = (1, 1, 1)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  setup = build.build_stage(config, stages.get_stage("t2i"))
  target = state_lib.abstract_state(setup.boxed_init, mesh, config.mesh.rules,
                                    jax.random.key(0))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "t2i", "checkpoints"), config.ckpt,
                                 read_only=True)
  state = ckpt.restore(step, target)
  meta = ckpt.restore_meta(step)
  ckpt.close()
  return jax.tree.map(np.asarray, jax.device_get(state)), meta


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir, env):
  workdir = str(tmp_path_factory.mktemp("straight"))
  proc = _run(_command(workdir, data_dir), env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def test_exact_resume_after_sigkill(straight, tmp_path, data_dir, env):
  workdir = str(tmp_path / "killed")
  proc = subprocess.Popen(_command(workdir, data_dir), cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  first = os.path.join(workdir, "t2i", "checkpoints", str(EVERY))
  deadline = time.time() + 600
  while not os.path.isdir(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
  killed_at = max(_losses(workdir))
  assert EVERY <= killed_at < STEPS

  proc = _run(_command(workdir, data_dir), env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  want, got = _losses(straight), _losses(workdir)
  assert sorted(got) == list(range(1, STEPS + 1))  # no duplicated steps after the resume
  for step in range(EVERY + 1, STEPS + 1):
    assert got[step] == want[step], step  # bitwise (floats round-trip through JSON)
  a, meta = _restore(straight, STEPS)
  b, _ = _restore(workdir, STEPS)
  assert meta["step"] == STEPS and meta["stage"] == "t2i"
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)


def test_sigterm_saves_and_exits_zero(tmp_path, data_dir, env):
  workdir = str(tmp_path / "preempted")
  proc = subprocess.Popen(_command(workdir, data_dir), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  log = os.path.join(workdir, "t2i", "metrics.jsonl")
  deadline = time.time() + 600
  while not os.path.exists(log) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "(preempted)" in out
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "t2i", "checkpoints"),
                                 tiny_config().ckpt, read_only=True)
  last = ckpt.latest_step()
  ckpt.close()
  assert last == max(_losses(workdir)) < STEPS  # saved at the step boundary it stopped at
  _, meta = _restore(workdir, last)
  assert meta["step"] == last


def test_nan_stops_and_keeps_last_good_checkpoint(straight, tmp_path, data_dir, env):
  workdir = str(tmp_path / "nan")
  shutil.copytree(straight, workdir)
  good, _ = _restore(workdir, STEPS)
  # A huge learning rate blows the weights up on the first resumed update.
  proc = _run(_command(workdir, data_dir, f"--config.stage.t2i.num_steps={STEPS + 8}",
                       "--config.stage.t2i.learning_rate=1e30"), env)
  assert proc.returncode != 0
  assert "loss is nan" in proc.stderr or "loss is inf" in proc.stderr, proc.stderr[-3000:]
  assert f"the last good checkpoint is step {STEPS}" in proc.stderr
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "t2i", "checkpoints"),
                                 tiny_config().ckpt, read_only=True)
  assert ckpt.latest_step() == STEPS
  ckpt.close()
  restored, _ = _restore(workdir, STEPS)
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), good, restored)


def test_incompatible_resume_is_refused_with_the_field_list(straight, data_dir, env):
  proc = _run(_command(straight, data_dir, "--config.model.channels=8",
                       "--config.diffusion.prediction=eps"), env)
  assert proc.returncode != 0
  assert "differs from the one the checkpoint" in proc.stderr
  assert "model.channels: 16 -> 8" in proc.stderr
  assert 'diffusion.prediction: "v" -> "eps"' in proc.stderr
  assert "--allow_config_change" in proc.stderr
  # Optimiser fields may change: this resume is accepted (and has nothing left to do).
  proc = _run(_command(straight, data_dir, "--config.optim.ema_decay=0.99"), env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"stage t2i: step {STEPS} (done)" in proc.stdout
