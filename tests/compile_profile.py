"""Where the suite's time goes: JAX's tracing, lowering and XLA compile time per test.

The suite is bound by XLA compiles (README, "Tests"). This opt-in pytest plugin records JAX's
own compile events (`jax.monitoring`: `jaxpr_trace_duration`, `jaxpr_to_mlir_module_duration`,
`backend_compile_duration`) with the test that caused them, one JSON line per event, in
`$STUNET_COMPILE_PROFILE_DIR/events_<pid>.jsonl` (one file per pytest-xdist worker):

  STUNET_COMPILE_PROFILE_DIR=/tmp/prof python -m pytest -q -n auto --maxprocesses=4 \
      --dist=loadfile -p tests.compile_profile
  python -m tests.compile_profile /tmp/prof

The second command prints the seconds per test file, largest first. Compiles in the
subprocesses that some tests start are not recorded. Trace times nest (a jitted function traced
inside another is counted in both), so they overstate; compile times do not.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import sys

import pytest

_ENV = "STUNET_COMPILE_PROFILE_DIR"
EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "compile"}
_current = {"test": "collection"}
_out = []


def _listener(event: str, duration: float, **kwargs) -> None:
  kind = EVENTS.get(event)
  if kind is None:
    return
  if not _out:
    _out.append(open(os.path.join(os.environ[_ENV], f"events_{os.getpid()}.jsonl"), "a"))
  _out[0].write(json.dumps({"test": _current["test"], "kind": kind, "seconds": duration,
                            "fun": str(kwargs.get("fun_name", ""))}) + "\n")


def pytest_configure(config):
  del config
  directory = os.environ.get(_ENV)
  if not directory:
    raise pytest.UsageError(f"-p tests.compile_profile needs {_ENV} set to a directory")
  os.makedirs(directory, exist_ok=True)
  from jax import monitoring  # pylint: disable=g-import-not-at-top
  monitoring.register_event_duration_secs_listener(_listener)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  del nextitem
  _current["test"] = item.nodeid
  yield
  if _out:
    _out[0].flush()


def summarise(directory: str) -> list[tuple[str, dict]]:
  """`[(test file, {kind: seconds, 'compiles': n})]`, the largest compile time first."""
  totals = collections.defaultdict(lambda: collections.Counter())
  for path in glob.glob(os.path.join(directory, "events_*.jsonl")):
    with open(path) as f:
      for line in f:
        event = json.loads(line)
        row = totals[event["test"].split("::")[0]]
        row[event["kind"]] += event["seconds"]
        row["compiles"] += event["kind"] == "compile"
  return sorted(totals.items(), key=lambda kv: -kv[1]["compile"])


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print(f"usage: python -m tests.compile_profile {_ENV.lower()}", file=sys.stderr)
    return 2
  rows = summarise(argv[1])
  if not rows:
    print(f"no events in {argv[1]}", file=sys.stderr)
    return 1
  print(f"{'compile s':>10} {'trace s':>8} {'lower s':>8} {'compiles':>8}  test file")
  for name, row in rows:
    print(f"{row['compile']:10.1f} {row['trace']:8.1f} {row['lower']:8.1f} "
          f"{row['compiles']:8d}  {name}")
  total = collections.Counter()
  for _, row in rows:
    total.update(row)
  print(f"{total['compile']:10.1f} {total['trace']:8.1f} {total['lower']:8.1f} "
        f"{total['compiles']:8d}  (all)")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
