"""Fixtures of the importer tests."""

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
  """The reference models are tiny: torch's thread pool only spins on a shared 2-core box."""
  import torch  # pylint: disable=g-import-not-at-top  (only the parity tests need torch)
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)
