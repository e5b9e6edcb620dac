"""Time for tests: the real reactor telling the time of a `task.Clock`."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import Clock


class SteppedReactor:
    """The real reactor (threads, timers) telling the time of a `task.Clock`, so that the
    store, the services and the API agree on a time the test controls."""

    def __init__(self, clock: Clock):
        self._clock = clock

    def seconds(self) -> float:
        return self._clock.seconds()

    def __getattr__(self, name):
        return getattr(reactor, name)


def clock_at(seconds: float) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock
