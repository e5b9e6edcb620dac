"""The Application Server's Print Provider operations (`pcnet.app.provider_ops`): printer
registration, decisions, charging at print time, offline replay, hold/release, Find-Me, expiry."""

from __future__ import annotations

import uuid as uuidlib
from decimal import Decimal

import pytest
from twisted.internet import defer, task

from pcnet.app.jobs import JobService
from pcnet.app.provider_ops import ProviderOffline, ProviderOps, StoreNodeRegistry
from pcnet.domain.model import CostModel, Filters, HoldMode, JobStatus
from pcnet.errors import Conflict, Forbidden, InsufficientFunds, InvalidInput, NotFound
from pcnet.net.line import Operations, RemoteError

from .memory_store import MemoryStore

D = Decimal


class Session:
    """A provider's pcnet/1 session as the server sees it; records the server's pushes."""

    def __init__(self, node="print01", answers=None):
        self.role, self.node, self.connected = "provider", node, True
        self.answers = answers or {}
        self.pushed = []

    def request(self, op, **fields):
        self.pushed.append((op, fields))
        answer = self.answers.get(op, {})
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def run(d):
    out = []
    d.addBoth(out.append)
    assert out, "Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


class World:
    def __init__(self):
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore()
        self.jobs = JobService(self.store, self.clock)
        self.session = Session()
        self.ops = ProviderOps(self.store, self.jobs, self.clock,
                               sessions={("provider", "print01"): self.session}, hold_expiry_hours=2)
        self.handlers = self.ops.register(Operations()).handlers()
        s = self.store
        self.alice = run(s.create_user("alice", initial_balance=D("10.0000")))
        cm = CostModel(grey=D("0.1000"), colour=D("0.5000"))
        self.office = run(s.create_printer("office", server="print01", queue="office", cost_model=cm,
                                           filters=Filters(max_pages=100), pdl="postscript"))
        self.secure = run(s.create_printer("secure", server="print01", queue="secure", cost_model=cm,
                                           hold_mode=HoldMode.HOLD, pdl="postscript"))
        self.findme = run(s.create_printer("findme", server="print01", queue="findme", cost_model=cm,
                                           hold_mode=HoldMode.FIND_ME, pdl="postscript"))
        self.colour = run(s.create_printer(
            "colour", server="print01", queue="colour", pdl="postscript",
            cost_model=CostModel(grey=D("0.2000"), colour=D("1.0000"))))
        self.pcl = run(s.create_printer("pcl", server="print01", queue="pcl", pdl="pcl"))

    def call(self, op, session=None, **fields):
        return run(self.handlers[op](session or self.session, fields))

    def job(self, queue="office", pages=4, colour=1, copies=1, user="alice", uuid=None):
        return dict(uuid=uuid or str(uuidlib.uuid4()), queue=queue, user=user,
                    document_name="report.pdf", pages=pages, colour_pages=colour, duplex=False,
                    copies=copies, paper_size="A4", cups_job_id=5)

    def balance(self):
        return run(self.store.get_account(self.alice.personal_account_id)).balance


@pytest.fixture
def w():
    return World()


def test_register_creates_printers_for_new_queues_and_reports_their_modes(w):
    reply = w.call("printers.register", printers=[{"queue": "office"}, {"queue": "new1", "location": "B2"}])
    by_queue = {p["queue"]: p for p in reply["printers"]}
    assert by_queue["office"]["id"] == w.office.id
    new = by_queue["new1"]
    assert (new["hold_mode"], new["failure_mode"]) == ("none", "print-log-later")
    assert run(w.store.find_printer("print01", "new1")).location == "B2"
    again = w.call("printers.register", printers=[{"queue": "new1"}])
    assert again["printers"][0]["id"] == new["id"]
    # Another print server's queue of the same name gets a printer of its own.
    other = w.call("printers.register", Session("print02"), printers=[{"queue": "office"}])
    assert other["printers"][0]["name"] == "print02/office"


def test_only_providers_may_call(w):
    device = Session()
    device.role = "device"
    with pytest.raises(Forbidden):
        w.call("job.submit", device, **w.job())


def test_submit_prints_and_charges_at_once(w):
    reply = w.call("job.submit", **w.job(pages=4, colour=1))
    assert (reply["action"], reply["cost"], reply["status"]) == ("print", "0.8000", "printed")
    assert w.balance() == D("9.2000")
    # The same uuid again (a provider that timed out and asks again) is not charged twice.
    job = w.job()
    w.call("job.submit", **job)
    w.call("job.submit", **job)
    assert w.balance() == D("8.4000")


def test_a_job_over_a_filter_limit_is_denied_and_not_charged(w):
    reply = w.call("job.submit", **w.job(pages=60, copies=2))
    assert reply["action"] == "deny" and "too many pages" in reply["reason"]
    assert w.balance() == D("10.0000")


def test_a_queue_of_another_print_server_is_refused(w):
    with pytest.raises(Forbidden):
        w.call("job.submit", Session("print02"), **dict(w.job(), printer_id=w.office.id))
    with pytest.raises(NotFound):
        w.call("job.submit", **w.job(queue="nosuch"))
    with pytest.raises(InvalidInput):
        w.call("job.submit", **dict(w.job(), pages="4"))


def test_a_held_job_is_charged_when_it_prints_not_when_held(w):
    job = w.job(queue="secure")
    reply = w.call("job.submit", **job)
    assert (reply["action"], reply["status"]) == ("hold", "held")
    assert w.balance() == D("10.0000")
    held, total = run(w.ops.list_held())
    assert total == 1 and held[0]["uuid"] == job["uuid"] and held[0]["printer"] == "secure"
    released = run(w.ops.release(job["uuid"], by="admin"))
    assert released["status"] == "released"
    assert w.session.pushed[-1] == ("job.release", {"uuid": job["uuid"]})
    assert w.balance() == D("10.0000")
    assert w.call("job.printed", uuid=job["uuid"])["charged"] is True
    assert w.balance() == D("9.2000")
    w.call("job.printed", uuid=job["uuid"])  # reported twice: charged once
    assert w.balance() == D("9.2000")
    assert run(w.store.get_job(job["uuid"])).status is JobStatus.PRINTED


def test_release_needs_the_provider_connected_and_the_job_stays_held_otherwise(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)
    w.session.connected = False
    with pytest.raises(ProviderOffline):
        run(w.ops.release(job["uuid"]))
    assert run(w.store.get_job(job["uuid"])).status is JobStatus.HELD
    w.session.connected = True
    w.session.answers["job.release"] = RemoteError("not_found", "CUPS job 5 is cancelled")
    with pytest.raises(Conflict):
        run(w.ops.release(job["uuid"]))
    assert run(w.store.get_job(job["uuid"])).status is JobStatus.CANCELLED


def test_release_is_refused_when_the_balance_cannot_pay(w):
    job = w.job(queue="secure", pages=40, colour=40)  # 20.00 > 10.00
    w.call("job.submit", **job)
    with pytest.raises(InsufficientFunds):
        run(w.ops.release(job["uuid"]))
    assert w.session.pushed == []


def test_find_me_prints_at_the_chosen_printer_and_is_charged_at_its_price(w):
    job = w.job(queue="findme", pages=4, colour=1)
    assert w.call("job.submit", **job)["action"] == "hold"
    with pytest.raises(InvalidInput):
        run(w.ops.release(job["uuid"]))  # no printer chosen
    with pytest.raises(InvalidInput, match="same page description language"):
        run(w.ops.release(job["uuid"], printer_id=w.pcl.id))
    with pytest.raises(InvalidInput):
        run(w.ops.release(job["uuid"], printer_id=w.findme.id))
    run(w.ops.release(job["uuid"], printer_id=w.colour.id))
    assert w.session.pushed[-1] == ("job.release", {
        "uuid": job["uuid"], "target_queue": "colour", "target_printer_id": w.colour.id})
    reply = w.call("job.printed", uuid=job["uuid"], printer_id=w.colour.id)
    # 3 grey x 0.20 + 1 colour x 1.00 at the target, not 0.80 at the Find-Me queue's prices.
    assert reply["cost"] == "1.6000"
    assert w.balance() == D("8.4000")
    stored = run(w.store.get_job(job["uuid"]))
    assert stored.reason == "Find-Me: released from findme" and stored.printer_id == w.colour.id
    assert stored.cost == D("1.6000")


def test_only_find_me_jobs_move_to_another_printer(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)
    with pytest.raises(InvalidInput):
        run(w.ops.release(job["uuid"], printer_id=w.colour.id))


def test_offline_jobs_are_charged_without_the_guard_exactly_once(w):
    run(w.store.apply_ledger_entry(_entry(w, D("-9.9000"))))
    job = dict(w.job(pages=4, colour=1), printed_at=1_700_000_000.5)
    first = w.call("job.offline", **job)
    assert first == {"status": "printed", "cost": "0.8000", "charged": True, "problem": ""}
    assert w.balance() == D("-0.7000")  # below zero: it printed, it is charged
    w.call("job.offline", **job)  # replayed again
    assert w.balance() == D("-0.7000")
    stored = run(w.store.get_job(job["uuid"]))
    assert stored.created_at.timestamp() == 1_700_000_000.5 and stored.origin == "print01"


def test_offline_replay_of_a_job_the_server_already_charged_charges_nothing(w):
    job = w.job()
    w.call("job.submit", **job)  # the server decided and charged; the reply was lost
    w.call("job.offline", **job)
    assert w.balance() == D("9.2000")


def test_offline_replay_of_a_job_the_server_held_charges_it_as_printed(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)  # held; the provider gave up waiting and printed it
    reply = w.call("job.offline", **dict(job, queue="secure"))
    assert reply["status"] == "printed" and w.balance() == D("9.2000")


def test_offline_job_of_an_unknown_user_is_recorded_not_charged(w):
    reply = w.call("job.offline", **w.job(user="mallory"))
    assert reply["charged"] is False
    (job,) = [j for j in w.store.jobs.values() if j.username == "mallory"]
    assert "unknown user" in job.reason


def test_expired_held_jobs_are_cancelled_on_their_print_server(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)
    assert run(w.ops.expire_due()) == 0
    w.clock.advance(2 * 3600 + 1)
    assert run(w.ops.expire_due()) == 1
    assert run(w.store.get_job(job["uuid"])).status is JobStatus.EXPIRED
    assert w.session.pushed[-1][0] == "job.cancel"
    assert w.call("job.status", uuid=job["uuid"]) == {"status": "expired"}


def test_expiry_timer_service_runs_on_the_clock(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)
    service = w.ops.expiry_service(60)
    service.startService()
    w.clock.advance(2 * 3600 + 60)
    service.stopService()
    assert run(w.store.get_job(job["uuid"])).status is JobStatus.EXPIRED


def test_cancel_marks_the_job_and_tells_the_provider(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)
    w.session.connected = False  # offline: the provider learns it from job.status later
    assert run(w.ops.cancel(job["uuid"], reason="by owner"))["status"] == "cancelled"
    assert w.session.pushed == []
    with pytest.raises(Conflict):
        run(w.ops.cancel(job["uuid"]))


def _entry(w, amount):
    from pcnet.domain.model import LedgerEntry, TransactionKind

    return LedgerEntry(str(uuidlib.uuid4()), w.alice.personal_account_id, amount, TransactionKind.ADJUST)


def test_a_job_reported_printed_after_it_expired_is_acknowledged_not_charged(w):
    job = w.job(queue="secure")
    w.call("job.submit", **job)
    w.clock.advance(3 * 3600)
    run(w.ops.expire_due())
    reply = w.call("job.printed", uuid=job["uuid"])
    assert reply["status"] == "expired" and reply["charged"] is False
    assert w.balance() == D("10.0000")


def test_application_server_wires_provider_ops_pushes_and_the_store_registry():
    from pcnet import config
    from pcnet.app.service import ApplicationServer

    clock = task.Clock()
    app = ApplicationServer(config.parse('[jobs]\nhold_expiry_hours = 2\n'), clock,
                            MemoryStore(), tls_options=None)
    ops = app.provider_ops
    assert ops.hold_expiry.total_seconds() == 7200
    assert {"printers.register", "job.submit", "job.printed", "job.offline", "job.status"} <= set(
        app.line_ops.names())
    factory = app.line_factory()
    factory.sessions[("provider", "print01")] = session = Session()
    assert ops._session("print01") is session
    assert isinstance(app.node_registry, StoreNodeRegistry)


def test_a_job_over_the_limits_is_denied_online_and_providers_learn_the_limits(w):
    """The spool file's 4,294,967,295 copies: a logged deny with the stable reason (never a
    charge), and every printer description carries the limits the provider applies offline."""
    from pcnet.domain.model import JobLimits

    w.jobs.limits = JobLimits(max_copies=50, max_pages=500, max_total_pages=1000)
    reply = w.call("job.submit", **w.job(pages=1, colour=0, copies=4_294_967_295))
    assert (reply["action"], reply["status"], reply["cost"]) == ("deny", "denied", "0.0000")
    assert reply["reason"] == "over the job limits: 4294967295 copies (limit 50)"
    assert reply["printer"]["limits"] == {"max_copies": 50, "max_pages": 500, "max_total_pages": 1000}
    assert run(w.store.get_job(reply["uuid"])).copies == 4_294_967_295
    assert w.balance() == D("10.0000")
    registered = w.call("printers.register", printers=[{"queue": "office"}])
    assert registered["printers"][0]["limits"]["max_copies"] == 50
