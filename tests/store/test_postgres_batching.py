"""PostgreSQL: record_job calls that wait for a free statement slot go together as one
pcnet_record_jobs statement (migration 0002), and every caller still gets exactly what a lone
call gets: its job and charge, InsufficientFunds, NotFound, the stored row for a repeat."""

import random
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from pcnet.domain.model import JobStatus
from pcnet.errors import InsufficientFunds, NotFound
from pcnet.store import _postgres, open_store

from .helpers import D, charge_for, job
from .helpers import check_ledger as _check_ledger


@pytest.fixture
def engine():
    """These tests are about the PostgreSQL engine only (the `store` fixture of tests/conftest.py)."""
    return "postgres"


def _stats(store):
    return dict(store._engine.stats)


def _delta(store, before):
    return {k: v - before[k] for k, v in store._engine.stats.items()}


async def _outcomes(calls):
    return await defer.DeferredList([defer.maybeDeferred(f) for f in calls], consumeErrors=True)


@pytest_twisted.ensureDeferred
async def test_the_migration_creates_the_batch_function(store):
    assert store.applied_migrations[:2] == [1, 2]
    # One function of each name: a later migration that re-creates them leaves no old overload.
    rows = await store._engine._pool.runQuery(
        "SELECT proname FROM pg_proc WHERE proname LIKE 'pcnet_record_job%%' ORDER BY proname")
    assert [r[0] for r in rows] == ["pcnet_record_job", "pcnet_record_jobs"]


@pytest_twisted.ensureDeferred
async def test_one_submitter_never_waits_for_a_batch(store):
    user = await store.create_user("solo", initial_balance=D(10))
    printer = await store.create_printer("P")
    before = _stats(store)
    for _ in range(20):
        j = job(user, printer, cost="0.1")
        stored, t = await store.record_job(j, charge_for(j))
        assert stored.uuid == j.uuid and t.reference == j.uuid
    assert _delta(store, before) == {"record_job_calls": 20, "record_job_statements": 20,
                                     "record_job_batches": 0, "record_job_retried_alone": 0}
    assert await _check_ledger(store, user.personal_account_id) == D(8)


@pytest_twisted.ensureDeferred
async def test_a_mixed_batch_answers_every_caller_as_if_alone(store):
    """Affordable and unaffordable charges, held and denied jobs, a missing account, an
    unrestricted account going negative, and twins of one job inside one batch."""
    rich = await store.create_user("rich", initial_balance=D(1000))
    broke = await store.create_user("broke", initial_balance=D("0.1"))
    limited = await store.create_user("limited", initial_balance=D("1"))  # 4 jobs of 0.25
    offline = await store.create_user("offline", initial_balance=D("0.1"))
    shared = await store.create_shared_account("dept", restricted=False)
    printer = await store.create_printer("P")

    cases = []   # (kind, job, charge, guard)
    for _ in range(30):
        j = job(rich, printer, cost="0.5")
        cases.append(("charged", j, charge_for(j), True))
    for _ in range(10):
        j = job(broke, printer, cost="0.5")
        cases.append(("refused", j, charge_for(j), True))
    for _ in range(10):
        j = job(limited, printer, cost="0.25")
        cases.append(("limited", j, charge_for(j), True))
    for _ in range(5):
        cases.append(("held", job(rich, printer, cost="0.5", status=JobStatus.HELD), None, True))
        cases.append(("denied", job(broke, printer, cost="0.5", status=JobStatus.DENIED,
                                    reason="insufficient balance"), None, True))
    for _ in range(5):
        j = job(rich, printer, cost="0.5")
        cases.append(("twin", j, charge_for(j), True))
        cases.append(("twin", j, charge_for(j), True))
    j = job(rich, printer, cost="0.5", account_id=999_999)
    cases.append(("missing", j, charge_for(j), True))
    for _ in range(3):
        j = job(rich, printer, cost="5", account_id=shared.id)
        cases.append(("unrestricted", j, charge_for(j), True))
    j = job(offline, printer, cost="0.5")   # printed already: charged without the guard
    cases.append(("unguarded", j, charge_for(j), False))
    random.Random(7).shuffle(cases)

    store._engine.record_job_slots = 1   # everything after the first call waits: batches
    before = _stats(store)
    results = await _outcomes([lambda c=c: store.record_job(c[1], c[2], guard=c[3]) for c in cases])
    delta = _delta(store, before)
    assert delta["record_job_calls"] == len(cases)
    assert delta["record_job_batches"] >= 1 and delta["record_job_statements"] <= 3, delta
    assert delta["record_job_retried_alone"] == 0, delta

    limited_ok = 0
    twins = {}
    for (kind, j, c, _), (ok, value) in zip(cases, results):
        if kind in ("refused",):
            assert not ok and value.check(InsufficientFunds), (kind, value)
            continue
        if kind == "missing":
            assert not ok and value.check(NotFound) and "999999" in value.value.message, value
            continue
        if kind == "limited":
            if not ok:
                assert value.check(InsufficientFunds), value
                continue
            limited_ok += 1
        assert ok, (kind, value)
        stored, t = value
        assert stored == await store.get_job(j.uuid)
        assert stored.status is j.status and stored.cost == j.cost and stored.id is not None
        if c is None:
            assert t is None
        else:
            assert t.uuid == c.uuid and t.amount == c.amount and t.account_id == c.account_id
            assert t.id is not None and t.reference == j.uuid
        if kind == "twin":
            twins.setdefault(j.uuid, []).append(value)
    assert limited_ok == 4
    assert len(twins) == 5 and all(a == b for a, b in twins.values())

    # A refusal in a batch says what a lone refusal says.
    refusals = {value.value.message for (kind, *_), (ok, value) in zip(cases, results)
                if kind == "refused"}
    assert len(refusals) == 1
    store._engine.record_job_slots = 4
    alone = job(broke, printer, cost="0.5")
    with pytest.raises(InsufficientFunds) as e:
        await store.record_job(alone, charge_for(alone))
    assert {e.value.message} == refusals

    # Balances and the ledger invariant.
    assert await _check_ledger(store, rich.personal_account_id) == D(1000) - D("0.5") * 35
    assert await _check_ledger(store, broke.personal_account_id) == D("0.1")
    assert await _check_ledger(store, offline.personal_account_id) == D("-0.4")
    assert await _check_ledger(store, limited.personal_account_id) == D(0)
    assert await _check_ledger(store, shared.id) == D(-15)
    # Refused and missing-account jobs wrote nothing; the held ones are in the change feed.
    for kind, j, _, _ in cases:
        if kind in ("refused", "missing"):
            with pytest.raises(NotFound):
                await store.get_job(j.uuid)
    held = {j.uuid for kind, j, _, _ in cases if kind == "held"}
    fed = {ch.key for ch in await store.changes_since(0, limit=10_000) if ch.table == "jobs"}
    assert held <= fed


@pytest_twisted.ensureDeferred
async def test_repeats_across_batches_return_what_was_stored(store):
    user = await store.create_user("again", initial_balance=D(3))
    printer = await store.create_printer("P")
    store._engine.record_job_slots = 1
    jobs = [job(user, printer, cost="1") for _ in range(5)]   # 3 fit
    first = await _outcomes([lambda j=j: store.record_job(j, charge_for(j)) for j in jobs])
    charged = [j for j, (ok, _) in zip(jobs, first) if ok]
    assert len(charged) == 3
    # The same jobs again, now in other batches, one of them changed (a repeat that differs),
    # with new jobs in between: repeats get the stored rows, the refused ones are refused again.
    from dataclasses import replace

    again = [replace(j, cost=D("0.5"), document_name="changed") for j in jobs]
    extra = [job(user, printer, cost="0", status=JobStatus.DENIED) for _ in range(5)]
    before = _stats(store)
    second = await _outcomes([lambda j=j: store.record_job(j, charge_for(j)) for j in again]
                             + [lambda j=j: store.record_job(j) for j in extra])
    assert _delta(store, before)["record_job_batches"] >= 1
    for (ok, value), (ok0, value0) in zip(second, first):
        assert ok == ok0
        if ok:
            assert value == value0 and value[0].document_name == "report.pdf"
        else:
            assert value.check(InsufficientFunds)
    assert all(ok for ok, _ in second[len(again):])
    assert await _check_ledger(store, user.personal_account_id) == D(0)


@pytest_twisted.ensureDeferred
async def test_concurrent_batches_with_twins_from_two_servers(db_url):
    """Two servers (two stores on one database) send batches at once: over the same accounts in
    different orders (no deadlock: no job had to be retried alone), then twins of the same jobs
    racing across batches and servers (each job charged once, every caller gets the stored
    row)."""
    a = open_store(db_url, reactor=reactor, pool_size=4)
    b = open_store(db_url, reactor=reactor, pool_size=4)
    await a.start()
    await b.start()
    try:
        for s in (a, b):
            s._engine.record_job_slots = 2
        printer = await a.create_printer("P")
        users = [await a.create_user(f"u{i}", initial_balance=D(100)) for i in range(8)]
        rng = random.Random(11)

        # 1. Distinct jobs over shared accounts, shuffled differently for each server.
        jobs_a = [job(rng.choice(users), printer, cost="0.1") for _ in range(300)]
        jobs_b = [job(rng.choice(users), printer, cost="0.1") for _ in range(300)]
        before_a, before_b = _stats(a), _stats(b)
        t0 = time.monotonic()
        results = await _outcomes(
            [lambda j=j: a.record_job(j, charge_for(j)) for j in jobs_a]
            + [lambda j=j: b.record_job(j, charge_for(j)) for j in jobs_b])
        assert all(ok for ok, _ in results), [v for ok, v in results if not ok][:3]
        assert time.monotonic() - t0 < 20
        for s, before in ((a, before_a), (b, before_b)):
            delta = _delta(s, before)
            assert delta["record_job_batches"] > 0 and delta["record_job_retried_alone"] == 0, delta

        # 2. Twins: every job sent to both servers at once, a third of them on an account that
        # can pay for only some.
        poor = await a.create_user("poor", initial_balance=D("2"))   # 8 jobs of 0.25
        twins = [job(rng.choice(users), printer, cost="0.1") for _ in range(150)]
        twins += [job(poor, printer, cost="0.25") for _ in range(20)]
        order_b = twins[:]
        rng.shuffle(order_b)
        results = await _outcomes(
            [lambda j=j: a.record_job(j, charge_for(j)) for j in twins]
            + [lambda j=j: b.record_job(j, charge_for(j)) for j in order_b])
        by_uuid = {}
        for j, (ok, value) in zip(twins + order_b, results):
            by_uuid.setdefault(j.uuid, []).append((ok, value))
        poor_charged = 0
        for j in twins:
            (ok1, v1), (ok2, v2) = by_uuid[j.uuid]
            if ok1 and ok2:
                assert v1 == v2 and v1[0] == await a.get_job(j.uuid)
            else:
                # Refused, and so was its twin: no twin is refused for the money the other took.
                assert j.account_id == poor.personal_account_id
                assert not ok1 and not ok2, (v1, v2)
                assert v1.check(InsufficientFunds) and v2.check(InsufficientFunds)
            if j.account_id == poor.personal_account_id and ok1:
                poor_charged += 1
        assert poor_charged == 8
        total = D(0)
        for u in users + [poor]:
            total += await _check_ledger(a, u.personal_account_id)
        _, n = await a.list_jobs(limit=10_000)
        assert n == 600 + 150 + 8
        charges = D("0.1") * (600 + 150) + D("0.25") * 8
        assert total == D(100) * len(users) + D(2) - charges
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_batches_are_bounded(store):
    user = await store.create_user("many", initial_balance=D(1000))
    printer = await store.create_printer("P")
    sizes = []
    original = store._engine._record_batch

    def spy(calls):
        sizes.append(len(calls))
        return original(calls)

    store._engine._record_batch = spy
    store._engine.record_job_slots = 1
    jobs = [job(user, printer, cost="0.01") for _ in range(300)]
    results = await _outcomes([lambda j=j: store.record_job(j, charge_for(j)) for j in jobs])
    assert all(ok for ok, _ in results)
    assert max(sizes) == _postgres.MAX_BATCH and sum(sizes) == 299   # the first went alone
    assert await _check_ledger(store, user.personal_account_id) == D(1000) - D(3)


@pytest_twisted.ensureDeferred
async def test_a_batch_that_fails_as_a_whole_answers_each_caller_alone(store):
    """A value the batch statement cannot carry (here a NUL character) makes the whole statement
    fail; then each call runs alone and gets its own outcome, the others are written."""
    user = await store.create_user("nul", initial_balance=D(10))
    printer = await store.create_printer("P")
    bad = job(user, printer, cost="1", document_name="a\x00b")
    with pytest.raises(Exception) as alone:
        await store.record_job(bad, charge_for(bad))
    store._engine.record_job_slots = 1
    good = [job(user, printer, cost="1") for _ in range(6)]
    calls = good[:3] + [bad] + good[3:]
    before = _stats(store)
    results = await _outcomes([lambda j=j: store.record_job(j, charge_for(j)) for j in calls])
    assert _delta(store, before)["record_job_retried_alone"] >= 1
    for j, (ok, value) in zip(calls, results):
        if j is bad:
            assert not ok and type(value.value) is type(alone.value)
        else:
            assert ok and value[0].uuid == j.uuid
    assert await _check_ledger(store, user.personal_account_id) == D(4)


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_the_calls_waiting_for_a_batch(db_url):
    s = open_store(db_url, reactor=reactor)
    await s.start()
    user = await s.create_user("late", initial_balance=D(100))
    printer = await s.create_printer("P")
    s._engine.record_job_slots = 1
    jobs = [job(user, printer, cost="1") for _ in range(100)]
    pending = [s.record_job(j, charge_for(j)) for j in jobs]
    await s.stop()
    results = await defer.gatherResults(pending)
    assert [r[0].uuid for r in results] == [j.uuid for j in jobs]
    s = open_store(db_url, reactor=reactor)
    await s.start()
    try:
        assert await _check_ledger(s, user.personal_account_id) == D(0)
    finally:
        await s.stop()


def test_item_keys_match_the_function_arguments():
    """The JSON keys the engine sends are the columns pcnet_record_jobs (as the newest
    migration that creates it defines it) reads."""
    from pcnet.store._convert import JOB_INSERT_COLUMNS
    from pcnet.store._migrations import available

    assert list(_postgres._JOB_KEYS) == [c.strip() for c in JOB_INSERT_COLUMNS.split(",")]
    sql = [sql for _, _, sql in available("postgres")
           if "CREATE FUNCTION pcnet_record_jobs" in sql][-1]
    for key in _postgres._JOB_KEYS + _postgres._CHARGE_KEYS + ("guard", "i"):
        assert f" {key} " in sql, key


@pytest_twisted.ensureDeferred
async def test_a_twin_committed_by_another_server_meanwhile_is_found_not_refused(store, db_url):
    """Another server writes a job (and takes the last of the money) while a batch carrying a
    twin of it waits for the row lock: the twin fails in its subtransaction on the unique
    index, runs again alone and gets the stored job and charge; the rest of its batch commits."""
    import psycopg2
    from twisted.internet import task

    from pcnet.store._convert import entry_params, job_params

    user = await store.create_user("raced", initial_balance=D(1))
    rich = await store.create_user("bystander", initial_balance=D(10))
    printer = await store.create_printer("P")
    twin = job(user, printer, cost="1")
    others = [job(rich, printer, cost="1") for _ in range(5)]
    other_server = psycopg2.connect(db_url)
    try:
        cur = other_server.cursor()
        cur.execute(_postgres._RECORD_JOB,
                    job_params(twin, 1) + entry_params(charge_for(twin), 1) + (True,))
        # Not committed yet: the batch below waits for its row lock.
        store._engine.record_job_slots = 1
        before = _stats(store)
        first = store.record_job(others[0], charge_for(others[0]))
        pending = [store.record_job(j, charge_for(j)) for j in [twin] + others[1:]]
        await first
        await task.deferLater(reactor, 0.3, lambda: None)
        assert not any(d.called for d in pending)
        other_server.commit()
        results = await defer.gatherResults(pending)
    finally:
        other_server.close()
    stored = await store.get_job(twin.uuid)
    assert results[0][0] == stored and results[0][1].balance_after == D(0)
    assert results[0][0].created_at == stored.created_at   # the other server's row, not ours
    assert [r[0].uuid for r in results[1:]] == [j.uuid for j in others[1:]]
    delta = _delta(store, before)
    assert delta["record_job_batches"] == 1 and delta["record_job_retried_alone"] == 1, delta
    assert await _check_ledger(store, user.personal_account_id) == D(0)
    assert await _check_ledger(store, rich.personal_account_id) == D(5)
