"""The tiny trained run the evaluation tests sample."""

import pytest

from tests.train.conftest import copy_of_small_run
from tests.train.conftest import data_dir  # noqa: F401  (session fixture)
from tests.train.conftest import small_run  # noqa: F401  (session fixture)


@pytest.fixture(scope="module")
def tiny_run(small_run, tmp_path_factory):  # noqa: F811
  """(workdir, mesh) of the session's tiny t2i + video run (2 steps each, one checkpoint per
  stage; `tests/train/conftest.small_run`), copied: evaluation writes into the run.

  One device: compiling for the 8 simulated devices costs more than the tiny steps.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from stunet.parallel import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from tests.train.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  return (copy_of_small_run(small_run, tmp_path_factory),
          mesh_lib.make_mesh(tiny_config().mesh, devices=jax.devices()[:1]))
