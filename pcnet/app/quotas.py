"""The quota scheduler: applies due group allocations to members' personal accounts.

Each allocation's ledger uuid is derived from (quota, due time, account), so a run that is
interrupted and repeated (a crash, two servers) never allocates twice for the same period.
"""

from __future__ import annotations

import uuid as uuidlib

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pcnet.app.jobs import utcnow
from pcnet.domain.ledger import allocation_amount
from pcnet.domain.model import LedgerEntry, Quota, TransactionKind
from pcnet.domain.quotas import next_boundary
from pcnet.money import format_money


class QuotaScheduler:
    log = Logger()

    def __init__(self, store, clock, *, on_account_changed=None):
        self.store = store
        self.clock = clock
        self._on_account_changed = on_account_changed or (lambda account_id: None)
        self._running: Deferred | None = None

    def run_due(self) -> Deferred:
        """Apply every quota that is due now. Never runs twice at once; fires with the number
        of allocations made."""
        if self._running is not None:
            return self._running
        d = self._running = Deferred.fromCoroutine(self._run_due())

        def done(result):
            self._running = None
            return result

        d.addBoth(done)
        return d

    async def _run_due(self) -> int:
        now = utcnow(self.clock)
        made = 0
        for quota in await self.store.due_quotas(now):
            try:
                made += await self._apply(quota, now)
            except Exception:
                # One broken quota (a deleted group, say) must not stop the others.
                self.log.failure("quota {id} could not be applied", id=quota.id)
        return made

    async def _apply(self, quota: Quota, now) -> int:
        due_at = quota.next_due_at or now
        made = 0
        for user in await self.store.group_members(quota.group_id):
            if user.personal_account_id is None or user.disabled:
                continue
            account = await self.store.get_account(user.personal_account_id)
            amount = allocation_amount(account.balance, quota.amount, quota.cap)
            if amount <= 0:
                continue
            key = f"pcnet:quota:{quota.id}:{due_at.isoformat()}:{account.id}"
            await self.store.apply_ledger_entry(LedgerEntry(
                uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, key)), account_id=account.id,
                amount=amount, kind=TransactionKind.ALLOCATION, reference=f"quota:{quota.id}",
                comment=f"{quota.period.value} allocation {format_money(amount)}", created_at=now))
            self._on_account_changed(account.id)
            made += 1
        await self.store.mark_quota_applied(quota.id, now, next_boundary(quota.period, now))
        self.log.info("quota {id}: {n} allocations", id=quota.id, n=made)
        return made


def quota_service(scheduler: QuotaScheduler, interval: float) -> TimerService:
    """A service that checks for due quotas every `interval` seconds (and at start-up)."""
    service = TimerService(interval, scheduler.run_due)
    service.clock = scheduler.clock
    return service
