"""Times and money come back exactly as they went in, on both engines."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import pytest_twisted

from pcnet.domain.model import JobStatus, TransactionKind
from pcnet.errors import InvalidInput
from pcnet.store._convert import from_micros, micros

from .helpers import D, charge_for, entry, job

TIMES = [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
    datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
]

AMOUNTS = ["0.0001", "-0.0001", "123456789.9999", "-987654321.1234", "0", "42", "0.1", "1e-4"]


def test_time_conversion_is_exact_integer_microseconds():
    for t in TIMES:
        assert from_micros(micros(t)) == t
        assert from_micros(micros(t)).tzinfo is UTC
    with pytest.raises(InvalidInput):
        micros(datetime(2030, 1, 1))  # naive: which zone?


@pytest_twisted.ensureDeferred
async def test_times_round_trip(store):
    user = await store.create_user("tim", initial_balance=D(100))
    printer = await store.create_printer("P")
    for t in TIMES:
        e = entry(user.personal_account_id, "1", kind=TransactionKind.ADJUST, created_at=t)
        stored = await store.apply_ledger_entry(e)
        assert stored.created_at == t and stored.created_at.utcoffset() == timedelta(0)
        j = job(user, printer, created_at=t)
        stored_job, _ = await store.record_job(j, charge_for(j))
        assert stored_job.created_at == t
        assert (await store.get_job(j.uuid)).created_at == t
    group = await store.create_group("g")
    quota = await store.create_quota(group.id, D(1), "daily", next_due_at=TIMES[4])
    assert quota.next_due_at == TIMES[4]
    applied = await store.mark_quota_applied(quota.id, TIMES[2], TIMES[3])
    assert (applied.last_applied_at, applied.next_due_at) == (TIMES[2], TIMES[3])


@pytest_twisted.ensureDeferred
async def test_created_at_defaults_to_the_reactor_clock(store):
    from twisted.internet import reactor

    user = await store.create_user("clock")
    now = datetime.fromtimestamp(reactor.seconds(), tz=UTC)
    assert abs(user.created_at - now) < timedelta(seconds=5)
    t = await store.apply_ledger_entry(entry(user.personal_account_id, "1"))
    assert abs(t.created_at - now) < timedelta(seconds=5)


@pytest_twisted.ensureDeferred
async def test_money_round_trips(store):
    user = await store.create_user("mona")
    shared = await store.create_shared_account("S", overdraft=D("1234.5678"), restricted=True)
    assert (await store.get_account(shared.id)).overdraft == D("1234.5678")
    printer = await store.create_printer("P")
    account_id = user.personal_account_id
    expected = D(0)
    for amount in AMOUNTS:
        t = await store.apply_ledger_entry(entry(account_id, amount, kind=TransactionKind.ADJUST))
        expected += D(amount)
        assert t.amount == D(amount) and t.balance_after == expected
        j = job(user, printer, cost=amount.lstrip("-"), status=JobStatus.DENIED)
        assert (await store.record_job(j))[0].cost == D(amount.lstrip("-"))
        assert (await store.get_job(j.uuid)).cost == D(amount.lstrip("-"))
    assert (await store.get_account(account_id)).balance == expected
    # Amounts finer than 1/10,000 are rounded half-even to the storage precision.
    t = await store.apply_ledger_entry(entry(account_id, "0.00005", kind=TransactionKind.ADJUST))
    assert t.amount == D("0.0000")
    t = await store.apply_ledger_entry(entry(account_id, "0.00015", kind=TransactionKind.ADJUST))
    assert t.amount == D("0.0002")


@pytest_twisted.ensureDeferred
async def test_floats_and_naive_times_are_refused(store):
    user = await store.create_user("flo")
    with pytest.raises(InvalidInput):
        await store.apply_ledger_entry(_float_entry(user.personal_account_id))
    with pytest.raises(InvalidInput):
        await store.create_user("flo2", initial_balance=1.5)
    with pytest.raises(InvalidInput):
        await store.due_quotas(datetime(2030, 1, 1))
    assert (await store.list_transactions(user.personal_account_id))[1] == 0


def _float_entry(account_id):
    from pcnet.domain.model import LedgerEntry

    return LedgerEntry(uuid="float-entry", account_id=account_id, amount=0.1, kind=TransactionKind.ADJUST)


@pytest_twisted.ensureDeferred
async def test_an_explicit_clock_stamps_default_times(engine, tmp_path):
    from twisted.internet import reactor
    from twisted.internet.task import Clock

    from tests.support.db import open_test_store

    clock = Clock()
    clock.advance(1741773600.25)  # 2025-03-12T10:00:00.25Z
    async with open_test_store(engine, tmp_path, reactor=reactor, clock=clock) as store:
        user = await store.create_user("clocked", initial_balance=D(1))
        expected = datetime(2025, 3, 12, 10, 0, 0, 250000, tzinfo=UTC)
        assert user.created_at == expected
        txns, _ = await store.list_transactions(user.personal_account_id)
        assert txns[0].created_at == expected
