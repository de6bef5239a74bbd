"""tests/compile_profile.py: JAX's compile events land in the file of the test that caused them."""

import os
import subprocess
import sys

from tests import compile_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TEST_FILE = '''
import jax, jax.numpy as jnp

def test_compiles():
  assert float(jax.jit(lambda x: jnp.sin(x) * 2)(1.0)) != 0.0

def test_compiles_nothing():
  assert 1 + 1 == 2
'''


def _pytest(tmp_path, env_dir):
  (tmp_path / "test_sample.py").write_text(_TEST_FILE)
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # a compile served from a cache is no compile
  env.pop(compile_profile._ENV, None)
  if env_dir is not None:
    env[compile_profile._ENV] = str(env_dir)
  return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "-p", "tests.compile_profile", str(tmp_path / "test_sample.py")],
                        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)


def test_records_each_compile_with_its_test(tmp_path):
  out = tmp_path / "events"
  proc = _pytest(tmp_path, out)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  rows = dict(compile_profile.summarise(str(out)))
  assert "test_sample.py" in rows
  row = rows["test_sample.py"]
  assert row["compiles"] >= 1 and row["compile"] > 0 and row["trace"] > 0
  assert compile_profile.main(["compile_profile", str(out)]) == 0


def test_without_the_directory_it_says_what_to_set(tmp_path):
  proc = _pytest(tmp_path, None)
  assert proc.returncode != 0
  assert "STUNET_COMPILE_PROFILE_DIR" in proc.stdout + proc.stderr
