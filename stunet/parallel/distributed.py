"""Joins the processes of a multi-process run before JAX touches a device (STYLE: Sharding).

One entry point for every launch mode:
- a single process: nothing to do;
- Cloud TPU VMs (`multihost=True`): `jax.distributed.initialize()` finds the coordinator,
  process count and id from the TPU environment;
- local multi-process runs (`launch/local.py`, tests): the coordinator address, process count
  and id come from arguments or the `STUNET_COORDINATOR`, `STUNET_NUM_PROCESSES`,
  `STUNET_PROCESS_ID` environment variables.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import jax

ENV_COORDINATOR = "STUNET_COORDINATOR"
ENV_NUM_PROCESSES = "STUNET_NUM_PROCESSES"
ENV_PROCESS_ID = "STUNET_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
  """Where this process sits in an explicitly described multi-process run."""
  coordinator: str  # host:port of process 0
  num_processes: int
  process_id: int


def _int(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}={value!r} is not an integer") from None


def resolve(coordinator: str | None = None, num_processes: int | None = None,
            process_id: int | None = None,
            environ: Mapping[str, str] | None = None) -> ProcessSpec | None:
  """The explicit multi-process setting (arguments win over the environment), or None.

  None means a single process: no coordinator and at most one process were given.
  """
  env = os.environ if environ is None else environ
  coordinator = coordinator or env.get(ENV_COORDINATOR) or None
  num_processes = (num_processes if num_processes is not None
                   else _int(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES))
  process_id = process_id if process_id is not None else _int(env.get(ENV_PROCESS_ID),
                                                               ENV_PROCESS_ID)
  if coordinator is None and (num_processes or 1) == 1 and not process_id:
    return None
  missing = [name for name, v in ((ENV_COORDINATOR, coordinator),
                                  (ENV_NUM_PROCESSES, num_processes),
                                  (ENV_PROCESS_ID, process_id)) if v is None]
  if missing:
    raise ValueError(f"a multi-process run needs the coordinator address, process count and "
                     f"process id; missing: {', '.join(missing)} (flags or environment)")
  if ":" not in coordinator:
    raise ValueError(f"{ENV_COORDINATOR}={coordinator!r} must be host:port")
  if num_processes < 1:
    raise ValueError(f"{ENV_NUM_PROCESSES}={num_processes} must be >= 1")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"{ENV_PROCESS_ID}={process_id} must be in [0, {num_processes})")
  return ProcessSpec(coordinator, num_processes, process_id)


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, multihost: bool = False) -> bool:
  """Calls `jax.distributed.initialize` when this is one process of several.

  Args:
    coordinator: host:port of process 0 (else `STUNET_COORDINATOR`).
    num_processes: processes in the run (else `STUNET_NUM_PROCESSES`).
    process_id: this process's index (else `STUNET_PROCESS_ID`).
    multihost: on Cloud TPU VMs, let JAX read the run's layout from the TPU environment.

  Returns:
    Whether `jax.distributed.initialize` was called.
  """
  spec = resolve(coordinator, num_processes, process_id)
  if spec is not None:
    jax.distributed.initialize(spec.coordinator, spec.num_processes, spec.process_id)
    return True
  if multihost:
    jax.distributed.initialize()
    return True
  return False
