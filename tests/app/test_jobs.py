"""The job service on a real store (both engines): decision, charge and job log together."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest_twisted
from twisted.internet import defer, task

from pcnet.app.services import SYSTEM, Services
from pcnet.domain.model import (
    CostModel,
    Filters,
    HoldMode,
    JobAction,
    JobRequest,
    JobStatus,
    TransactionKind,
)

D = Decimal


def clock_at(when=datetime(2026, 11, 23, 12, tzinfo=timezone.utc)):
    c = task.Clock()
    c.advance(when.timestamp())
    return c


async def setup(store, *, balance="5.00", restricted=True, **printer_kw):
    user = await store.create_user("alice", initial_balance=D(balance), restricted=restricted)
    printer = await store.create_printer(
        "lib", cost_model=CostModel(grey=D("0.10"), colour=D("0.50"), duplex_discount=D("0.02")), **printer_kw)
    return user, printer


def job(printer, **kw):
    fields = dict(username="alice", printer_id=printer.id, pages=4, colour_pages=1, document_name="essay.pdf")
    fields.update(kw)
    return JobRequest(**fields)


async def balance_and_sum(store, account_id):
    account = await store.get_account(account_id)
    txns, _ = await store.list_transactions(account_id, limit=10_000)
    return account.balance, sum((t.amount for t in txns), D(0))


@pytest_twisted.ensureDeferred
async def test_printed_job_is_charged_and_logged_in_one_go(store):
    user, printer = await setup(store)
    jobs = Services(store, clock_at()).jobs
    decision, record = await jobs.submit(job(printer))
    assert decision.action is JobAction.PRINT and decision.cost == D("0.8000")
    assert record.status is JobStatus.PRINTED and record.cost == D("0.8000")
    assert record.created_at == datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    balance, total = await balance_and_sum(store, user.personal_account_id)
    assert balance == total == D("4.2000")
    txns, _ = await store.list_transactions(user.personal_account_id)
    charge = [t for t in txns if t.kind is TransactionKind.CHARGE]
    assert len(charge) == 1 and charge[0].reference == record.uuid
    logged, total_jobs = await store.list_jobs(user_id=user.id)
    assert total_jobs == 1 and logged[0].uuid == record.uuid


@pytest_twisted.ensureDeferred
async def test_resubmitted_job_uuid_is_charged_once(store):
    user, printer = await setup(store)
    jobs = Services(store, clock_at()).jobs
    first = await jobs.submit(job(printer, uuid="job-1"))
    second = await jobs.submit(job(printer, uuid="job-1"))
    assert first[1].uuid == second[1].uuid == "job-1"
    assert second[0].action is JobAction.PRINT
    balance, total = await balance_and_sum(store, user.personal_account_id)
    assert balance == total == D("4.2000")


@pytest_twisted.ensureDeferred
async def test_insufficient_balance_is_denied_and_nothing_charged(store):
    user, printer = await setup(store, balance="0.50")
    decision, record = await Services(store, clock_at()).jobs.submit(job(printer))
    assert decision.action is JobAction.DENY
    assert decision.reason.startswith("insufficient balance")
    assert record.status is JobStatus.DENIED
    balance, total = await balance_and_sum(store, user.personal_account_id)
    assert balance == total == D("0.5000")


@pytest_twisted.ensureDeferred
async def test_concurrent_jobs_never_overdraw_a_restricted_account(store):
    """40 jobs at 0.80 race for a 5.00 balance: exactly 6 print, the cache never lets a 7th
    through, and the balance equals the sum of the ledger."""
    user, printer = await setup(store)
    jobs = Services(store, clock_at()).jobs
    results = await defer.gatherResults([jobs.submit(job(printer)) for _ in range(40)])
    printed = [d for d, _ in results if d.action is JobAction.PRINT]
    assert len(printed) == 6
    balance, total = await balance_and_sum(store, user.personal_account_id)
    assert balance == total == D("0.2000")
    # The cached balance followed the ledger: the next job is denied without a stale print.
    d, _ = await jobs.submit(job(printer))
    assert d.action is JobAction.DENY


@pytest_twisted.ensureDeferred
async def test_hold_printer_holds_without_charging(store):
    user, printer = await setup(store, hold_mode=HoldMode.HOLD)
    decision, record = await Services(store, clock_at()).jobs.submit(job(printer))
    assert decision.action is JobAction.HOLD and record.status is JobStatus.HELD
    assert decision.cost == D("0.8000")
    balance, _ = await balance_and_sum(store, user.personal_account_id)
    assert balance == D("5.0000")


@pytest_twisted.ensureDeferred
async def test_unknown_user_is_denied_and_logged(store):
    _, printer = await setup(store)
    decision, record = await Services(store, clock_at()).jobs.submit(job(printer, username="mallory"))
    assert decision.action is JobAction.DENY and "unknown user" in decision.reason
    assert (await store.get_job(record.uuid)).username == "mallory"


@pytest_twisted.ensureDeferred
async def test_duplicate_job_within_window_is_denied(store):
    _, printer = await setup(store, filters=Filters(duplicate_window_seconds=60))
    clock = clock_at()
    jobs = Services(store, clock).jobs
    assert (await jobs.submit(job(printer)))[0].action is JobAction.PRINT
    clock.advance(30)
    assert (await jobs.submit(job(printer)))[0].reason.startswith("duplicate job")
    clock.advance(61)
    assert (await jobs.submit(job(printer)))[0].action is JobAction.PRINT


@pytest_twisted.ensureDeferred
async def test_shared_account_needs_access(store):
    user, printer = await setup(store)
    physics = await store.create_shared_account("physics", initial_balance=D("100"))
    jobs = Services(store, clock_at()).jobs
    denied, _ = await jobs.submit(job(printer, account_id=physics.id))
    assert denied.action is JobAction.DENY and denied.reason.startswith("account not available")
    group = await store.create_group("physicists")
    await store.add_group_member(group.id, user.id)
    await store.grant_account_access(physics.id, group_id=group.id)
    allowed, record = await jobs.submit(job(printer, account_id=physics.id))
    assert allowed.action is JobAction.PRINT and record.account_id == physics.id
    assert (await store.get_account(physics.id)).balance == D("99.2000")
    assert (await store.get_account(user.personal_account_id)).balance == D("5.0000")


@pytest_twisted.ensureDeferred
async def test_cached_printer_is_forgotten_after_a_change(store):
    """The job path caches printers and users; a change made through the services reaches
    the next decision (their change event), with nothing else to call."""
    user, printer = await setup(store)
    services = Services(store, clock_at())
    jobs = services.jobs
    await jobs.submit(job(printer))
    await services.printers.update(SYSTEM, printer.id, cost_model={"grey": D("1.00")})
    decision, _ = await jobs.submit(job(printer, colour_pages=0))
    assert decision.cost == D("4.0000")
    await services.users.update(SYSTEM, "alice", disabled=True)
    decision, _ = await jobs.submit(job(printer))
    assert decision.action is JobAction.DENY and "user disabled" in decision.reason


@pytest_twisted.ensureDeferred
async def test_a_job_that_names_no_paper_size_gets_the_servers_default(store):
    """One default paper size, configurable ([jobs] paper_size): a job without one (an import
    that gives none) is priced and logged on it."""
    from pcnet.app.services import ServiceSettings

    user, printer = await setup(store)
    lib_letter = await store.update_printer(printer.id, cost_model=CostModel(
        grey=D("0.10"), colour=D("0.50"), sizes={"Letter": (D("0.30"), D("0.90"))}))
    jobs = Services(store, clock_at(), settings=ServiceSettings(paper_size="Letter")).jobs
    decision, record = await jobs.submit(job(lib_letter, paper_size="", colour_pages=0))
    assert record.paper_size == "Letter" and decision.cost == D("1.2000")
    _, a4 = await Services(store, clock_at()).jobs.submit(job(lib_letter, paper_size=""))
    assert a4.paper_size == "A4"


class _Decisions:
    """Where the job service counts its decisions (the server's metrics' hooks)."""

    def __init__(self):
        self.now, self.decided = 0.0, []

    def timer(self):
        self.now += 0.25
        return self.now

    def job_decided(self, path, action, charged, seconds):
        self.decided.append((path, action, charged, seconds))


@pytest_twisted.ensureDeferred
async def test_every_decision_is_counted_in_the_servers_metrics(store):
    from pcnet.app.services import Actor

    user, printer = await setup(store, balance="0.50", server="print01", queue="q")
    metrics = _Decisions()
    jobs = Services(store, clock_at(), metrics=metrics).jobs
    await jobs.submit(job(printer))                                  # 0.80 > 0.50: denied
    await jobs.submit(job(printer, colour_pages=0, pages=2))          # 0.20: printed
    await jobs.record_offline(job(printer, uuid="4a3b8f0e-0000-4000-8000-000000000001"),
                              Actor.for_node("provider", "print01"))
    assert metrics.decided == [("submit", "deny", False, 0.25), ("submit", "print", True, 0.25),
                               ("offline", "print", True, 0.25)]
