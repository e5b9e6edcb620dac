"""The quota scheduler: a timer that applies the due group allocations, through the quota
service (`pcnet.app.services.quotas`, which owns the rules: idempotent allocation uuids, caps,
disabled users skipped) as the `scheduler` actor."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from pcnet.app.services import SCHEDULER


class QuotaScheduler:
    def __init__(self, services):
        self.services = services
        self.clock = services.clock
        self._running: Deferred | None = None

    def run_due(self) -> Deferred:
        """Apply every quota that is due now. Never runs twice at once; fires with the number
        of allocations made."""
        if self._running is not None:
            return self._running
        d = self._running = Deferred.fromCoroutine(self.services.quotas.run_due(SCHEDULER))

        def done(result):
            self._running = None
            return result

        d.addBoth(done)
        return d

