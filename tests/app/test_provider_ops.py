"""The Application Server's Print Provider operations (`pcnet.app.provider_ops`) over the real
service layer and store, on SQLite and PostgreSQL: printer registration, decisions, charging at
print time, offline replay, and the held-job service behind them (hold/release, Find-Me,
cancel, expiry)."""

from __future__ import annotations

import uuid as uuidlib
from decimal import Decimal

import pytest
import pytest_twisted

from pcnet.app.provider_ops import ProviderOps
from pcnet.app.services import (
    SCHEDULER,
    SYSTEM,
    Actor,
    NodeSessions,
    ProviderOffline,
    Services,
    ServiceSettings,
)
from pcnet.domain.model import CostModel, Filters, HoldMode, JobLimits, JobStatus, LedgerEntry, TransactionKind
from pcnet.errors import Conflict, Forbidden, InsufficientFunds, InvalidInput, NotFound
from pcnet.net.line import Operations, RemoteError
from tests.fakes import ProviderSession
from tests.support.clock import SteppedReactor, clock_at

D = Decimal
T0 = 1_800_000_000


class World:
    async def build(self, store, *, hold_expiry_hours=2.0, limits=None):
        self.clock = clock_at(T0)
        self.store = store
        self.session = ProviderSession("print01")
        settings = ServiceSettings(hold_expiry_hours=hold_expiry_hours,
                                   **({"job_limits": limits} if limits else {}))
        self.services = Services(store, SteppedReactor(self.clock), settings=settings,
                                 sessions=NodeSessions({("provider", "print01"): self.session}))
        self.held = self.services.held_jobs
        self.handlers = ProviderOps(self.services).register(Operations()).handlers()
        self.alice = await store.create_user("alice", initial_balance=D("10.0000"))
        cm = CostModel(grey=D("0.1000"), colour=D("0.5000"))
        self.office = await store.create_printer(
            "office", server="print01", queue="office", cost_model=cm,
            filters=Filters(max_pages=100), pdl="postscript")
        self.secure = await store.create_printer(
            "secure", server="print01", queue="secure", cost_model=cm, hold_mode=HoldMode.HOLD,
            pdl="postscript")
        self.findme = await store.create_printer(
            "findme", server="print01", queue="findme", cost_model=cm,
            hold_mode=HoldMode.FIND_ME, pdl="postscript")
        self.colour = await store.create_printer(
            "colour", server="print01", queue="colour", pdl="postscript",
            cost_model=CostModel(grey=D("0.2000"), colour=D("1.0000")))
        self.pcl = await store.create_printer("pcl", server="print01", queue="pcl", pdl="pcl")
        return self

    def call(self, op, session=None, **fields):
        return self.handlers[op](session or self.session, fields)

    @staticmethod
    def job(queue="office", pages=4, colour=1, copies=1, user="alice", uuid=None):
        return dict(uuid=uuid or str(uuidlib.uuid4()), queue=queue, user=user,
                    document_name="report.pdf", pages=pages, colour_pages=colour, duplex=False,
                    copies=copies, paper_size="A4", cups_job_id=5)

    async def balance(self):
        return (await self.store.get_account(self.alice.personal_account_id)).balance


@pytest_twisted.ensureDeferred
async def test_register_creates_printers_for_new_queues_and_reports_their_modes(store):
    w = await World().build(store)
    reply = await w.call("printers.register",
                         printers=[{"queue": "office"}, {"queue": "new1", "location": "B2"}])
    by_queue = {p["queue"]: p for p in reply["printers"]}
    assert by_queue["office"]["id"] == w.office.id
    new = by_queue["new1"]
    assert (new["hold_mode"], new["failure_mode"]) == ("none", "print-log-later")
    assert (await store.find_printer("print01", "new1")).location == "B2"
    again = await w.call("printers.register", printers=[{"queue": "new1"}])
    assert again["printers"][0]["id"] == new["id"]
    # Another print server's queue of the same name gets a printer of its own.
    other = await w.call("printers.register", ProviderSession("print02"), printers=[{"queue": "office"}])
    assert other["printers"][0]["name"] == "print02/office"
    # The printers a provider brought are in the audit log as its doing.
    actors = {(e.actor, e.object_name) for e in (await store.list_audit(action="printer.register"))[0]}
    assert actors == {("provider:print01", "new1"), ("provider:print02", "print02/office")}


@pytest_twisted.ensureDeferred
async def test_only_providers_may_call(store):
    w = await World().build(store)
    with pytest.raises(Forbidden):
        await w.call("job.submit", ProviderSession(role="device"), **w.job())


@pytest_twisted.ensureDeferred
async def test_submit_prints_and_charges_at_once(store):
    w = await World().build(store)
    reply = await w.call("job.submit", **w.job(pages=4, colour=1))
    assert (reply["action"], reply["cost"], reply["status"]) == ("print", "0.8000", "printed")
    assert await w.balance() == D("9.2000")
    # The same uuid again (a provider that timed out and asks again) is not charged twice.
    job = w.job()
    await w.call("job.submit", **job)
    await w.call("job.submit", **job)
    assert await w.balance() == D("8.4000")
    stored = await store.get_job(job["uuid"])
    assert stored.origin == "print01" and stored.printer_name == "office"


@pytest_twisted.ensureDeferred
async def test_a_job_over_a_filter_limit_is_denied_and_not_charged(store):
    w = await World().build(store)
    reply = await w.call("job.submit", **w.job(pages=60, copies=2))
    assert reply["action"] == "deny" and "too many pages" in reply["reason"]
    assert await w.balance() == D("10.0000")


@pytest_twisted.ensureDeferred
async def test_a_queue_of_another_print_server_is_refused(store):
    w = await World().build(store)
    with pytest.raises(Forbidden):
        await w.call("job.submit", ProviderSession("print02"), **dict(w.job(), printer_id=w.office.id))
    with pytest.raises(NotFound):
        await w.call("job.submit", **w.job(queue="nosuch"))
    with pytest.raises(InvalidInput):
        await w.call("job.submit", **dict(w.job(), pages="4"))


@pytest_twisted.ensureDeferred
async def test_a_held_job_is_charged_when_it_prints_not_when_held(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    reply = await w.call("job.submit", **job)
    assert (reply["action"], reply["status"]) == ("hold", "held")
    assert await w.balance() == D("10.0000")
    held, total = await w.held.list()
    assert total == 1 and held[0].uuid == job["uuid"] and held[0].printer_name == "secure"
    released = await w.held.release(SYSTEM, job["uuid"])
    assert released.status is JobStatus.RELEASED and released.released_by == "system"
    assert w.session.pushed[-1] == ("job.release", {"uuid": job["uuid"]})
    assert await w.balance() == D("10.0000")
    assert (await w.call("job.printed", uuid=job["uuid"]))["charged"] is True
    assert await w.balance() == D("9.2000")
    await w.call("job.printed", uuid=job["uuid"])  # reported twice: charged once
    assert await w.balance() == D("9.2000")
    printed = await store.get_job(job["uuid"])
    assert printed.status is JobStatus.PRINTED and printed.released_by == "system"


@pytest_twisted.ensureDeferred
async def test_release_needs_the_provider_connected_and_the_job_stays_held_otherwise(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)
    w.session.connected = False
    with pytest.raises(ProviderOffline):
        await w.held.release(SYSTEM, job["uuid"])
    assert (await store.get_job(job["uuid"])).status is JobStatus.HELD
    w.session.connected = True
    w.session.answers["job.release"] = RemoteError("not_found", "CUPS job 5 is cancelled")
    with pytest.raises(Conflict):
        await w.held.release(SYSTEM, job["uuid"])
    assert (await store.get_job(job["uuid"])).status is JobStatus.CANCELLED


@pytest_twisted.ensureDeferred
async def test_a_release_the_provider_cannot_carry_out_leaves_the_job_held_by_nobody(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)
    w.session.answers["job.release"] = RemoteError("busy", "CUPS is restarting")
    with pytest.raises(RemoteError):
        await w.held.release(SYSTEM, job["uuid"])
    again = await store.get_job(job["uuid"])
    assert again.status is JobStatus.HELD and again.released_by == ""


@pytest_twisted.ensureDeferred
async def test_release_is_refused_when_the_balance_cannot_pay(store):
    w = await World().build(store)
    job = w.job(queue="secure", pages=40, colour=40)  # 20.00 > 10.00
    await w.call("job.submit", **job)
    with pytest.raises(InsufficientFunds):
        await w.held.release(SYSTEM, job["uuid"])
    assert w.session.pushed == []


@pytest_twisted.ensureDeferred
async def test_find_me_prints_at_the_chosen_printer_and_is_charged_at_its_price(store):
    w = await World().build(store)
    job = w.job(queue="findme", pages=4, colour=1)
    assert (await w.call("job.submit", **job))["action"] == "hold"
    with pytest.raises(InvalidInput) as no_printer:
        await w.held.release(SYSTEM, job["uuid"])  # no printer chosen
    # The error names the request's field: `printer` (an id or a name).
    assert no_printer.value.field == "printer" and no_printer.value.message.startswith("printer: ")
    with pytest.raises(InvalidInput, match="same page description language") as other_pdl:
        await w.held.release(SYSTEM, job["uuid"], printer=w.pcl.id)
    assert other_pdl.value.field == "printer"
    with pytest.raises(InvalidInput):
        await w.held.release(SYSTEM, job["uuid"], printer="findme")
    await w.held.release(SYSTEM, job["uuid"], printer="colour")
    assert w.session.pushed[-1] == ("job.release", {
        "uuid": job["uuid"], "target_queue": "colour", "target_printer_id": w.colour.id})
    reply = await w.call("job.printed", uuid=job["uuid"], printer_id=w.colour.id)
    # 3 grey x 0.20 + 1 colour x 1.00 at the target, not 0.80 at the Find-Me queue's prices.
    assert reply["cost"] == "1.6000"
    assert await w.balance() == D("8.4000")
    stored = await store.get_job(job["uuid"])
    assert stored.reason == "Find-Me: released from findme" and stored.printer_id == w.colour.id
    assert stored.cost == D("1.6000") and stored.printer_name == "colour"
    # Reported twice (a replayed journal): charged once.
    await w.call("job.printed", uuid=job["uuid"], printer_id=w.colour.id)
    assert await w.balance() == D("8.4000")


@pytest_twisted.ensureDeferred
async def test_only_find_me_jobs_move_to_another_printer(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)
    with pytest.raises(InvalidInput) as e:
        await w.held.release(SYSTEM, job["uuid"], printer=w.colour.id)
    assert e.value.field == "printer"


@pytest_twisted.ensureDeferred
async def test_offline_jobs_are_charged_without_the_guard_exactly_once(store):
    w = await World().build(store)
    await store.apply_ledger_entry(LedgerEntry(str(uuidlib.uuid4()), w.alice.personal_account_id,
                                               D("-9.9000"), TransactionKind.ADJUST))
    job = dict(w.job(pages=4, colour=1), printed_at=1_700_000_000.5)
    first = await w.call("job.offline", **job)
    assert first == {"status": "printed", "cost": "0.8000", "charged": True, "problem": ""}
    assert await w.balance() == D("-0.7000")  # below zero: it printed, it is charged
    await w.call("job.offline", **job)  # replayed again
    assert await w.balance() == D("-0.7000")
    stored = await store.get_job(job["uuid"])
    assert stored.created_at.timestamp() == 1_700_000_000.5 and stored.origin == "print01"


@pytest_twisted.ensureDeferred
async def test_offline_replay_of_a_job_the_server_already_charged_charges_nothing(store):
    w = await World().build(store)
    job = w.job()
    await w.call("job.submit", **job)  # the server decided and charged; the reply was lost
    await w.call("job.offline", **job)
    assert await w.balance() == D("9.2000")


@pytest_twisted.ensureDeferred
async def test_offline_replay_of_a_job_the_server_held_charges_it_as_printed(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)  # held; the provider gave up waiting and printed it
    reply = await w.call("job.offline", **job)
    assert reply["status"] == "printed" and await w.balance() == D("9.2000")


@pytest_twisted.ensureDeferred
async def test_offline_job_of_an_unknown_user_is_recorded_not_charged(store):
    w = await World().build(store)
    job = w.job(user="mallory")
    reply = await w.call("job.offline", **job)
    assert reply["charged"] is False
    assert "unknown user" in (await store.get_job(job["uuid"])).reason


@pytest_twisted.ensureDeferred
async def test_expired_held_jobs_are_cancelled_on_their_print_server(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)
    assert await w.held.expire_due(SCHEDULER) == 0
    w.clock.advance(2 * 3600 + 1)
    assert await w.held.expire_due(SCHEDULER) == 1
    expired = await store.get_job(job["uuid"])
    assert expired.status is JobStatus.EXPIRED and expired.cancelled_by == "scheduler"
    assert w.session.pushed[-1][0] == "job.cancel"
    assert await w.call("job.status", uuid=job["uuid"]) == {"status": "expired"}
    # Expiry is not an administrator's change: the job log says it, the audit log does not.
    assert (await store.list_audit(object_kind="job"))[1] == 0


@pytest_twisted.ensureDeferred
async def test_cancel_marks_the_job_and_tells_the_provider(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)
    w.session.connected = False  # offline: the provider learns it from job.status later
    admin = Actor("token", name="desk", id="7", admin=True)
    cancelled = await w.held.cancel(admin, job["uuid"], reason="by owner")
    assert cancelled.status is JobStatus.CANCELLED and cancelled.cancelled_by == "token:7"
    assert w.session.pushed == []
    with pytest.raises(Conflict):
        await w.held.cancel(admin, job["uuid"])
    (row,), _ = await store.list_audit(action="job.cancel")
    assert (row.actor, row.object_id, row.before, row.after) == (
        "token:7", job["uuid"], {"status": "held"}, {"status": "cancelled"})


@pytest_twisted.ensureDeferred
async def test_a_job_reported_printed_after_it_expired_is_acknowledged_not_charged(store):
    w = await World().build(store)
    job = w.job(queue="secure")
    await w.call("job.submit", **job)
    w.clock.advance(3 * 3600)
    await w.held.expire_due(SCHEDULER)
    reply = await w.call("job.printed", uuid=job["uuid"])
    assert reply["status"] == "expired" and reply["charged"] is False
    assert await w.balance() == D("10.0000")


@pytest_twisted.ensureDeferred
async def test_a_job_over_the_limits_is_denied_online_and_providers_learn_the_limits(store):
    """The spool file's 4,294,967,295 copies: a logged deny with the stable reason (never a
    charge), and every printer description carries the limits the provider applies offline."""
    w = await World().build(store, limits=JobLimits(max_copies=50, max_pages=500,
                                                    max_total_pages=1000))
    reply = await w.call("job.submit", **w.job(pages=1, colour=0, copies=4_294_967_295))
    assert (reply["action"], reply["status"], reply["cost"]) == ("deny", "denied", "0.0000")
    assert reply["reason"] == "over the job limits: 4294967295 copies (limit 50)"
    assert reply["printer"]["limits"] == {"max_copies": 50, "max_pages": 500, "max_total_pages": 1000}
    assert (await store.get_job(reply["uuid"])).copies == 4_294_967_295
    assert await w.balance() == D("10.0000")
    registered = await w.call("printers.register", printers=[{"queue": "office"}])
    assert registered["printers"][0]["limits"]["max_copies"] == 50


def test_application_server_wires_the_services_pushes_and_the_store_registry():
    from twisted.internet import task

    from pcnet import config
    from pcnet.app.service import ApplicationServer
    from pcnet.app.services import StoreNodeRegistry

    clock = task.Clock()
    app = ApplicationServer(config.parse('[jobs]\nhold_expiry_hours = 2\npaper_size = "Letter"\n'),
                            clock, store=None, tls_options=None)
    assert app.service_layer.held_jobs.hold_expiry.total_seconds() == 7200
    assert app.service_layer.jobs.paper_size == "Letter"
    assert {"printers.register", "job.submit", "job.printed", "job.offline", "job.status"} <= set(
        app.line_ops.names())
    factory = app.line_factory()
    factory.sessions[("provider", "print01")] = session = ProviderSession("print01")
    assert app.service_layer.sessions.session("provider", "print01") is session
    assert app.service_layer.nodes.connected() == [("provider", "print01")]
    assert isinstance(app.node_registry, StoreNodeRegistry)
