"""Printers (stable ids, rename history) and the job log with its charges, on both engines."""

from datetime import UTC, datetime, timedelta

import pytest
import pytest_twisted

from pcnet.domain.model import (
    CostModel,
    FailureMode,
    Filters,
    HoldMode,
    JobStatus,
    TransactionKind,
)
from pcnet.errors import Conflict, InsufficientFunds, InvalidInput, NotFound

from .helpers import D, charge_for, job, ledger_sum, new_uuid

COST = CostModel(grey=D("0.0325"), colour=D("0.1250"), duplex_discount=D("0.0100"),
                 sizes={"A3": (D("0.0650"), D("0.2500")), "Letter": (D("0.0300"), D("0.1200"))})
FILTERS = Filters(max_pages=200, max_copies=20, max_cost=D("12.3456"), grey_only=True,
                  duplex_only=True, deny_document_patterns=(r"\.exe$", "secret"),
                  duplicate_window_seconds=300)


@pytest_twisted.ensureDeferred
async def test_printer_round_trips_cost_model_and_filters_exactly(store):
    p = await store.create_printer("Library Colour", server="print01", queue="lib-colour",
                                   location="Library, 1st floor", cost_model=COST, filters=FILTERS,
                                   hold_mode=HoldMode.FIND_ME, failure_mode=FailureMode.HOLD,
                                   pdl="postscript")
    assert p.cost_model == COST and p.filters == FILTERS
    assert p.hold_mode is HoldMode.FIND_ME and p.failure_mode is FailureMode.HOLD
    assert p.server == "print01" and p.queue == "lib-colour" and p.pdl == "postscript"
    assert await store.get_printer(p.id) == p
    assert await store.get_printer_by_name("Library Colour") == p
    assert await store.find_printer("print01", "lib-colour") == p
    assert await store.find_printer("print01", "other") is None
    plain = await store.create_printer("Plain")
    assert plain.cost_model == CostModel() and plain.filters == Filters()
    assert plain.hold_mode is HoldMode.NONE and plain.failure_mode is FailureMode.PRINT_LOG_LATER
    assert [x.name for x in await store.list_printers()] == ["Library Colour", "Plain"]
    with pytest.raises(NotFound):
        await store.get_printer(99999)
    with pytest.raises(NotFound):
        await store.get_printer_by_name("nope")


@pytest_twisted.ensureDeferred
async def test_printer_names_and_queues_are_unique(store):
    await store.create_printer("P1", server="s", queue="q")
    with pytest.raises(Conflict):
        await store.create_printer("P1")
    with pytest.raises(Conflict):
        await store.create_printer("P2", server="s", queue="q")
    # Printers without a queue (virtual ones) do not clash with each other.
    await store.create_printer("V1")
    await store.create_printer("V2")
    with pytest.raises(InvalidInput):
        await store.create_printer("P3", hold_mode="sometimes")


@pytest_twisted.ensureDeferred
async def test_rename_keeps_the_printer_id_and_its_history(store):
    user = await store.create_user("rita", initial_balance=D(10))
    p = await store.create_printer("Old Name", server="s1", queue="q1")
    j = await store.record_job(job(user, p), None)
    renamed = await store.update_printer(p.id, name="New Name", location="Room 2",
                                         cost_model=COST, filters=FILTERS, disabled=True,
                                         hold_mode="hold", failure_mode="print-no-log", pdl="pcl")
    assert renamed.id == p.id and renamed.name == "New Name" and renamed.location == "Room 2"
    assert renamed.cost_model == COST and renamed.filters == FILTERS and renamed.disabled
    assert renamed.hold_mode is HoldMode.HOLD and renamed.failure_mode is FailureMode.PRINT_NO_LOG
    assert (await store.get_printer_by_name("New Name")).id == p.id
    with pytest.raises(NotFound):
        await store.get_printer_by_name("Old Name")
    history = await store.printer_names(p.id)
    assert [h.name for h in history] == ["Old Name", "New Name"]
    assert history[0].until is not None and history[0].until == history[1].since
    assert history[1].until is None
    # The job log still points at the same printer.
    assert (await store.get_job(j[0].uuid)).printer_id == p.id
    jobs, _ = await store.list_jobs(printer_id=p.id)
    assert [x.uuid for x in jobs] == [j[0].uuid]
    # The old name is free again; the new one is taken.
    await store.create_printer("Old Name")
    other = await store.create_printer("Other")
    with pytest.raises(Conflict):
        await store.update_printer(other.id, name="New Name")
    with pytest.raises(Conflict):
        await store.update_printer(other.id, server="s1", queue="q1")
    # Same name again: no new history entry.
    await store.update_printer(p.id, name="New Name")
    assert len(await store.printer_names(p.id)) == 2
    with pytest.raises(NotFound):
        await store.update_printer(99999, name="x")
    with pytest.raises(InvalidInput):
        await store.update_printer(p.id, colour="blue")


# --- jobs -------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_record_job_with_its_charge_in_one_transaction(store):
    user = await store.create_user("sam", initial_balance=D("5"))
    printer = await store.create_printer("P")
    j = job(user, printer, cost="0.3750", pages=3, colour_pages=1, duplex=True, copies=2,
            paper_size="A3", document_name="thesis.pdf", client="lab-12", origin="site-b")
    stored, t = await store.record_job(j, charge_for(j))
    assert stored.id is not None and stored.uuid == j.uuid and stored.status is JobStatus.PRINTED
    assert (stored.pages, stored.colour_pages, stored.duplex, stored.copies) == (3, 1, True, 2)
    assert stored.paper_size == "A3" and stored.document_name == "thesis.pdf"
    assert stored.cost == D("0.375") and stored.client == "lab-12" and stored.origin == "site-b"
    assert stored.created_at is not None
    assert t.amount == D("-0.375") and t.balance_after == D("4.625") and t.reference == j.uuid
    assert t.kind is TransactionKind.CHARGE
    assert await store.get_job(j.uuid) == stored
    assert (await store.get_account(user.personal_account_id)).balance == D("4.625")


@pytest_twisted.ensureDeferred
async def test_record_job_is_idempotent_on_the_job_uuid(store):
    user = await store.create_user("tess", initial_balance=D("5"))
    printer = await store.create_printer("P")
    j = job(user, printer, cost="1")
    first = await store.record_job(j, charge_for(j))
    # A replay: same job uuid, even with another charge uuid or contents, charges nothing.
    again = await store.record_job(job(user, printer, uuid=j.uuid, cost="3", document_name="x"),
                                   charge_for(j, uuid=new_uuid()))
    assert again == first
    assert (await store.get_account(user.personal_account_id)).balance == D(4)
    assert (await store.list_jobs())[1] == 1


@pytest_twisted.ensureDeferred
async def test_record_job_reuses_an_existing_charge(store):
    """A charge applied first (say, replayed separately) is linked, not applied twice."""
    user = await store.create_user("uma", initial_balance=D("5"))
    printer = await store.create_printer("P")
    j = job(user, printer, cost="1")
    c = charge_for(j)
    t = await store.apply_ledger_entry(c)
    stored, t2 = await store.record_job(j, c)
    assert t2 == t and stored.uuid == j.uuid
    assert (await store.get_account(user.personal_account_id)).balance == D(4)


@pytest_twisted.ensureDeferred
async def test_guarded_record_job_refused_writes_nothing(store):
    user = await store.create_user("vic", initial_balance=D("0.10"))
    printer = await store.create_printer("P")
    j = job(user, printer, cost="0.2")
    with pytest.raises(InsufficientFunds):
        await store.record_job(j, charge_for(j))
    with pytest.raises(NotFound):
        await store.get_job(j.uuid)
    assert (await store.get_account(user.personal_account_id)).balance == D("0.1")
    # Without the guard the charge goes through (a job already printed offline, say).
    stored, t = await store.record_job(j, charge_for(j), guard=False)
    assert t.balance_after == D("-0.1")
    # A denied job is logged without a charge.
    denied = job(user, printer, status=JobStatus.DENIED, reason="insufficient balance")
    stored, t = await store.record_job(denied)
    assert t is None and stored.status is JobStatus.DENIED and stored.reason == "insufficient balance"
    assert await ledger_sum(store, user.personal_account_id) == D("-0.1")


@pytest_twisted.ensureDeferred
async def test_record_job_without_a_known_user(store):
    printer = await store.create_printer("P")
    from pcnet.domain.model import JobRecord

    j = JobRecord(uuid=new_uuid(), user_id=None, username="ghost", printer_id=printer.id,
                  account_id=None, pages=1, colour_pages=0, duplex=False, copies=1,
                  paper_size="A4", document_name="", cost=0, status=JobStatus.DENIED,
                  reason="unknown user: ghost")
    stored, t = await store.record_job(j)
    assert stored.user_id is None and stored.cost == D(0) and t is None


@pytest_twisted.ensureDeferred
async def test_held_job_released_and_charged(store):
    user = await store.create_user("wendy", initial_balance=D("2"))
    printer = await store.create_printer("P", hold_mode=HoldMode.HOLD)
    held, t = await store.record_job(job(user, printer, cost="0.5", status=JobStatus.HELD,
                                         reason="held for release (hold)"))
    assert t is None and held.status is JobStatus.HELD
    c = charge_for(held)
    printed, t = await store.update_job_status(held.uuid, JobStatus.PRINTED, reason="released at P",
                                               charge=c)
    assert printed.status is JobStatus.PRINTED and printed.reason == "released at P"
    assert printed.id == held.id and t.uuid == c.uuid and t.balance_after == D("1.5")
    # Repeating the same move (a replay) changes nothing and returns the stored charge.
    assert await store.update_job_status(held.uuid, "printed", charge=c) == (printed, t)
    # A printed job cannot go back.
    with pytest.raises(Conflict):
        await store.update_job_status(held.uuid, JobStatus.CANCELLED)
    assert (await store.get_account(user.personal_account_id)).balance == D("1.5")


@pytest_twisted.ensureDeferred
async def test_held_job_cancelled_or_refused_on_release(store):
    user = await store.create_user("xena", initial_balance=D("0.2"))
    printer = await store.create_printer("P")
    a, _ = await store.record_job(job(user, printer, cost="0.5", status=JobStatus.HELD))
    b, _ = await store.record_job(job(user, printer, cost="0.5", status=JobStatus.HELD))
    cancelled, t = await store.update_job_status(a.uuid, JobStatus.CANCELLED, reason="by user")
    assert cancelled.status is JobStatus.CANCELLED and t is None
    with pytest.raises(InsufficientFunds):
        await store.update_job_status(b.uuid, JobStatus.PRINTED, charge=charge_for(b))
    assert (await store.get_job(b.uuid)).status is JobStatus.HELD  # nothing changed
    expired, _ = await store.update_job_status(b.uuid, "expired", reason="not released in 24 h")
    assert expired.status is JobStatus.EXPIRED
    with pytest.raises(NotFound):
        await store.update_job_status(new_uuid(), JobStatus.PRINTED)
    with pytest.raises(InvalidInput):
        await store.update_job_status(a.uuid, "shredded")


@pytest_twisted.ensureDeferred
async def test_list_jobs_filters_and_orders_newest_first(store):
    base = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    u1 = await store.create_user("yann", initial_balance=D(100))
    u2 = await store.create_user("zara", initial_balance=D(100))
    p1 = await store.create_printer("P1")
    p2 = await store.create_printer("P2")
    shared = await store.create_shared_account("Shared")
    made = []
    specs = [(u1, p1, None, JobStatus.PRINTED), (u1, p2, shared.id, JobStatus.PRINTED),
             (u2, p1, None, JobStatus.DENIED), (u2, p2, None, JobStatus.HELD),
             (u1, p1, None, JobStatus.PRINTED)]
    for i, (user, printer, account_id, status) in enumerate(specs):
        j = job(user, printer, account_id=account_id, status=status,
                created_at=base + timedelta(minutes=i))
        made.append((await store.record_job(j, charge_for(j) if status is JobStatus.PRINTED else None))[0])
    jobs, total = await store.list_jobs()
    assert total == 5 and [j.uuid for j in jobs] == [m.uuid for m in reversed(made)]
    assert [j.uuid for j in (await store.list_jobs(user_id=u1.id))[0]] == [made[4].uuid, made[1].uuid, made[0].uuid]
    assert [j.uuid for j in (await store.list_jobs(printer_id=p2.id))[0]] == [made[3].uuid, made[1].uuid]
    assert [j.uuid for j in (await store.list_jobs(account_id=shared.id))[0]] == [made[1].uuid]
    assert [j.uuid for j in (await store.list_jobs(status=JobStatus.HELD))[0]] == [made[3].uuid]
    window = await store.list_jobs(since=base + timedelta(minutes=1), until=base + timedelta(minutes=3))
    assert window[1] == 2 and [j.uuid for j in window[0]] == [made[2].uuid, made[1].uuid]
    page, total = await store.list_jobs(offset=1, limit=2, user_id=u1.id)
    assert total == 3 and [j.uuid for j in page] == [made[1].uuid, made[0].uuid]
    with pytest.raises(NotFound):
        await store.get_job("no-such-job")


@pytest_twisted.ensureDeferred
async def test_find_duplicate_job(store):
    base = datetime(2032, 1, 1, tzinfo=UTC)
    user = await store.create_user("abe", initial_balance=D(100))
    other = await store.create_user("bea", initial_balance=D(100))
    printer = await store.create_printer("P")
    p2 = await store.create_printer("P2")
    await store.record_job(job(user, printer, document_name="a.pdf", pages=3, created_at=base))
    await store.record_job(job(user, printer, document_name="d.pdf", pages=3, created_at=base,
                               status=JobStatus.DENIED))
    await store.record_job(job(user, printer, document_name="h.pdf", pages=3, created_at=base,
                               status=JobStatus.HELD))
    assert await store.find_duplicate_job(user.id, printer.id, "a.pdf", 3, base)
    assert await store.find_duplicate_job(user.id, printer.id, "h.pdf", 3, base - timedelta(seconds=5))
    assert not await store.find_duplicate_job(user.id, printer.id, "a.pdf", 3, base + timedelta(microseconds=1))
    assert not await store.find_duplicate_job(user.id, printer.id, "a.pdf", 4, base)
    assert not await store.find_duplicate_job(user.id, p2.id, "a.pdf", 3, base)
    assert not await store.find_duplicate_job(other.id, printer.id, "a.pdf", 3, base)
    assert not await store.find_duplicate_job(user.id, printer.id, "d.pdf", 3, base)


@pytest_twisted.ensureDeferred
async def test_many_concurrent_jobs_on_one_account_keep_the_invariant(store):
    """64 submitters race to charge one restricted account: exactly as many jobs as the balance
    covers are charged, the rest are refused, and balance == sum of the ledger."""
    from twisted.internet import defer

    user = await store.create_user("crowd", initial_balance=D("10"), overdraft=D("0.5"))
    printer = await store.create_printer("P")
    account_id = user.personal_account_id
    jobs = [job(user, printer, cost="0.25") for _ in range(120)]
    outcomes = await defer.DeferredList(
        [store.record_job(j, charge_for(j)) for j in jobs] +
        # Some replays of the same jobs, racing their originals.
        [store.record_job(j, charge_for(j)) for j in jobs[:20]], consumeErrors=True)
    refused = [f for ok, f in outcomes if not ok]
    assert all(f.check(InsufficientFunds) for f in refused), [f.value for f in refused]
    account = await store.get_account(account_id)
    charged = (await store.list_jobs(user_id=user.id, limit=1000))[1]
    assert charged == 42  # (10 + 0.5) / 0.25
    assert account.balance == D("-0.5")
    assert await ledger_sum(store, account_id) == account.balance
    txns, _ = await store.list_transactions(account_id, limit=1000)
    assert sorted(t.balance_after for t in txns) == sorted(D("10") - D("0.25") * i for i in range(43))


@pytest_twisted.ensureDeferred
async def test_concurrent_replays_of_one_job_charge_once_even_when_that_empties_the_account(store):
    """Twins of one job (a provider retrying, a site replaying) racing each other: one charge,
    every twin gets the stored job and charge, none is refused for the money its twin took."""
    from twisted.internet import defer

    user = await store.create_user("twin", initial_balance=D("1"))
    printer = await store.create_printer("P")
    for _ in range(3):
        await store.set_balance(user.personal_account_id, D(1), uuid=new_uuid())
        j = job(user, printer, cost="1")
        results = await defer.gatherResults([store.record_job(j, charge_for(j)) for _ in range(24)])
        assert all(r == results[0] for r in results)
        assert results[0][1].balance_after == D(0)
    assert (await store.get_account(user.personal_account_id)).balance == D(0)
    assert await ledger_sum(store, user.personal_account_id) == D(0)
