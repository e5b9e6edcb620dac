"""Fixtures for the Application Server's services."""

import pytest
from twisted.logger import globalLogPublisher


@pytest.fixture
def tracebacks():
    """Failures logged while the test runs (a pcnet/1 server logs one for every `internal`
    answer); a test asserts the list stays empty."""
    seen = []

    def observe(event):
        if event.get("log_failure") is not None:
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)
