"""Test session setup: 8 simulated CPU devices, a shared compilation cache, parsed absl flags,
and a garbage collector tuned for tracing (`pytest_configure`).

The device count and the cache must be set before JAX or grain initialise, which is why they
are set at import time here.
"""

import atexit
import gc
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=8"
# Test models are tiny, so XLA's compile time dominates the suite; the LLVM backend's
# optimisation passes roughly halve it when skipped, at no cost to what the tests check.
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = _flags.strip()
# Many test files compile the same tiny steps. One compilation cache for the session, shared
# by the xdist workers and the subprocesses the tests start (both inherit this environment),
# compiles each distinct computation once. A cache directory set by the caller is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="stunet-tests-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
# grain and some absl-based code read flags; outside absl.app.run they must be marked parsed.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


def pytest_configure(config):
  """Python's cyclic garbage collector, tuned for a process that traces models all day.

  Tracing allocates millions of short-lived objects, and with the default thresholds the
  collector ran ~5000 times in tests/nn/test_stunet.py, 4% of its time, mostly re-scanning the
  modules imported at start-up (jax, flax, torch). Those are frozen out of its scans, and the
  young generation is collected every 50,000 allocations instead of 700: 1.5 s instead of
  8.7 s of collection in that file, nothing the tests can observe.
  """
  del config
  gc.collect()
  gc.freeze()
  gc.set_threshold(50_000, 20, 100)
