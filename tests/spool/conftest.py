"""Fixtures of the sandbox tests: each sandbox this machine can run, and a work directory."""

from __future__ import annotations

import pytest

from ._sandboxes import modes, work_dir


@pytest.fixture(params=modes())
def mode(request):
    """``bwrap`` and ``user``: a test using it runs once in each sandbox."""
    return request.param


@pytest.fixture
def work():
    """A fresh directory for the jobs' private directories (removed after the test)."""
    with work_dir() as path:
        yield path
