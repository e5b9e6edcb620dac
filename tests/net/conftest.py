"""Fixtures for the pcnet.net tests."""

import pytest

from ._support import make_pki


@pytest.fixture(scope="session")
def pki():
    """A deployment CA, a server and a client certificate from it, and an unrelated CA."""
    return make_pki()
