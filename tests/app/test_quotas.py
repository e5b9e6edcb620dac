"""The quota scheduler on a real store: due allocations, caps, and never twice a period."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest_twisted
from twisted.internet import task

from pcnet.app.quotas import QuotaScheduler
from pcnet.app.services import Services
from pcnet.domain.model import QuotaPeriod, TransactionKind

D = Decimal
NOW = datetime(2026, 11, 23, 0, 5, tzinfo=timezone.utc)


def clock():
    c = task.Clock()
    c.advance(NOW.timestamp())
    return c


@pytest_twisted.ensureDeferred
async def test_due_quota_tops_up_members_once_per_period_and_respects_cap(store):
    students = await store.create_group("students")
    alice = await store.create_user("alice", initial_balance=D("1.00"))
    bob = await store.create_user("bob", initial_balance=D("9.00"))
    carol = await store.create_user("carol")  # not a member
    for u in (alice, bob):
        await store.add_group_member(students.id, u.id)
    quota = await store.create_quota(students.id, D("5.00"), QuotaPeriod.DAILY, cap=D("10.00"),
                                     next_due_at=datetime(2026, 11, 23, tzinfo=timezone.utc))
    c = clock()
    scheduler = QuotaScheduler(Services(store, c))
    assert await scheduler.run_due() == 2
    assert (await store.get_account(alice.personal_account_id)).balance == D("6.0000")
    assert (await store.get_account(bob.personal_account_id)).balance == D("10.0000")  # capped
    assert (await store.get_account(carol.personal_account_id)).balance == D("0.0000")
    # The next run finds nothing due until tomorrow's boundary.
    assert await scheduler.run_due() == 0
    [q] = await store.list_quotas()
    assert q.next_due_at == datetime(2026, 11, 24, tzinfo=timezone.utc)
    txns, _ = await store.list_transactions(alice.personal_account_id)
    assert [t.kind for t in txns].count(TransactionKind.ALLOCATION) == 1
    # A repeated run for the same due time (a crash before it was marked) allocates nothing more.
    await store.update_quota(quota.id, next_due_at=datetime(2026, 11, 23, tzinfo=timezone.utc))
    await scheduler.run_due()
    txns, _ = await store.list_transactions(alice.personal_account_id)
    assert [t.kind for t in txns].count(TransactionKind.ALLOCATION) == 1
    c.advance(24 * 3600)
    assert await scheduler.run_due() == 1  # alice again; bob is at the cap
