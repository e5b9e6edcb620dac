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


@pytest.fixture
def logged():
    """Every log event while the test runs, as (namespace, level name, formatted text)."""
    from twisted.logger import formatEvent

    seen = []

    def observe(event):
        level = event.get("log_level")
        seen.append((event.get("log_namespace"), level.name if level else None, formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)
