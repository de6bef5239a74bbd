"""Resolving a multi-process run's layout from arguments and the environment."""

import pytest

from stunet.parallel import distributed


def test_single_process_is_none():
  assert distributed.resolve(environ={}) is None
  assert distributed.resolve(num_processes=1, environ={}) is None
  assert not distributed.initialize_distributed(num_processes=1)


def test_from_environment():
  env = {"STUNET_COORDINATOR": "localhost:1234", "STUNET_NUM_PROCESSES": "2",
         "STUNET_PROCESS_ID": "1"}
  assert distributed.resolve(environ=env) == distributed.ProcessSpec("localhost:1234", 2, 1)


def test_arguments_override_environment():
  env = {"STUNET_COORDINATOR": "localhost:1234", "STUNET_NUM_PROCESSES": "2",
         "STUNET_PROCESS_ID": "1"}
  spec = distributed.resolve("10.0.0.2:99", 4, 3, environ=env)
  assert spec == distributed.ProcessSpec("10.0.0.2:99", 4, 3)


@pytest.mark.parametrize("kwargs, env, message", [
    (dict(coordinator="localhost:1"), {}, "missing: STUNET_NUM_PROCESSES, STUNET_PROCESS_ID"),
    (dict(num_processes=2, process_id=0), {}, "missing: STUNET_COORDINATOR"),
    (dict(coordinator="localhost", num_processes=2, process_id=0), {}, "must be host:port"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), {}, r"must be in \[0, 2\)"),
    ({}, {"STUNET_NUM_PROCESSES": "two"}, "is not an integer"),
])
def test_errors_name_the_setting(kwargs, env, message):
  with pytest.raises(ValueError, match=message):
    distributed.resolve(environ=env, **kwargs)
