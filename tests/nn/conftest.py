"""Fixtures for the nn tests."""

import pytest

from tests.nn.unet_testing import tiny_unet_config


@pytest.fixture(scope="session")
def tiny_config():
  return tiny_unet_config()
