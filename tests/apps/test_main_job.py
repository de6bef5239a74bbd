"""End to end: `python -m experiments.main` on a tiny override, then a re-run that only reports.

The README's quick-start command runs the same job on `experiments/configs/quickstart.py`; here
the tiny config (two resolution levels, two steps per stage, two denoising steps) keeps it to
a couple of minutes on CPU.
"""

import json
import os
import subprocess
import sys

import pytest

from stunet.apps import main_job

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVERRIDES = ("--config.model.channel_mult=(1,2)", "--config.model.num_res_blocks=(1,1)",
             "--config.model.attention_levels=(False,True)", "--config.model.num_heads=(2,2)",
             "--config.model.temporal_factors=(2,)", "--config.stage.t2i.num_steps=2",
             "--config.stage.video.num_steps=2", "--config.ckpt.every_steps=2",
             "--config.log.num_samples=0", "--config.diffusion.sample_steps=2",
             "--config.text.on_truncation=silent", "--config.sample.prompts=('a red circle',)",
             # 3 showcase and 3 test clips: one sampler shape, compiled once (persistent cache).
             "--num_eval_prompts=3", "--num_showcase_samples=3")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  e = dict(os.environ)
  # One device (no simulated ones) and the suite's fast-compile flags.
  e.update(XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
           JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return e


def _main(workdir, data_dir, env):
  args = [sys.executable, "-m", "experiments.main", "--config=experiments/configs/tiny.py",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", *OVERRIDES]
  return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_main_job_end_to_end_then_resumes(tmp_path, env):
  workdir, data_dir = str(tmp_path / "run"), str(tmp_path / "data")
  first = _main(workdir, data_dir, env)
  assert first.returncode == 0, first.stderr[-3000:]
  assert os.path.isdir(os.path.join(data_dir, "shapes_video", "tiny"))  # built on first use
  with open(os.path.join(workdir, main_job.SUMMARY_NAME)) as f:
    summary = json.load(f)
  assert summary["stages"] == {"t2i": 2, "video": 2}
  for key in ("showcase_gallery", "eval_gallery", "metrics_json", "metrics_markdown"):
    assert os.path.exists(summary[key]), key
    assert summary[key] in first.stdout  # printed for the user
  sampled = os.listdir(os.path.dirname(summary["eval_gallery"]))
  assert sum(n.endswith("_xt.png") for n in sampled) == 3
  assert sum(n.endswith("_sheet.png") for n in sampled) == 3
  assert summary["metrics"]["num_clips"] == 3
  assert "colour" in first.stdout and "all-correct" in first.stdout
  metrics_mtime = os.path.getmtime(summary["metrics_json"])
  with open(os.path.join(workdir, "video", "metrics.jsonl")) as f:
    logged = f.read()

  again = _main(workdir, data_dir, env)
  assert again.returncode == 0, again.stderr[-3000:]
  with open(os.path.join(workdir, "video", "metrics.jsonl")) as f:
    assert f.read() == logged  # no training step ran again
  assert os.path.getmtime(summary["metrics_json"]) == metrics_mtime  # metrics read back
  assert summary["metrics_json"] in again.stdout
