"""Decisions that every process of a multi-host run must take together.

A SIGTERM (TPU maintenance) may reach the hosts at different steps; if one host saved and
exited while the others entered the next step's collectives, the job would hang. So the flag
is combined across processes and all of them stop at the same step boundary.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is True on any of them (a collective on multi-host)."""
  if jax.process_count() == 1:
    return bool(flag)
  flags = multihost_utils.process_allgather(np.asarray(flag, np.int32))
  return bool(np.any(flags))
