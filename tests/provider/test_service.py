"""The Print Provider's logic (`pcnet.provider.service.PrintProvider`) with a scripted server,
a fake CUPS and `task.Clock`: decisions, failure modes, the journal, hold/release, Find-Me."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from pcnet.domain.model import FailureMode
from pcnet.provider.journal import HeldJobs, OfflineJournal, PrinterCache
from pcnet.provider.service import BackendProtocol, PrintProvider, ServerLink, analyse_spool, duplex_from_options

from pcnet.errors import InvalidInput
from pcnet.net.line import RemoteError

from tests.fakes import FakeCups, ServerSession, remote_error

ANALYSIS = {"pages": 3, "colour_pages": 1, "duplex": False, "copies": 1, "paper_size": "A4",
            "error": None, "fallback": False}

PRINTERS = {
    "office": {"id": 1, "failure_mode": "print-log-later", "hold_mode": "none", "pdl": "ps"},
    "nolog": {"id": 2, "failure_mode": "print-no-log", "hold_mode": "none", "pdl": "ps"},
    "careful": {"id": 3, "failure_mode": "hold", "hold_mode": "none", "pdl": "ps"},
    "secure": {"id": 4, "failure_mode": "hold", "hold_mode": "hold", "pdl": "ps"},
    "findme": {"id": 5, "failure_mode": "hold", "hold_mode": "find-me", "pdl": "ps"},
}


class World:
    """A provider wired to fakes, with its files under a temporary directory."""

    def __init__(self, tmp_path, *, timeout=10.0):
        self.tmp = tmp_path
        self.clock = task.Clock()
        self.cups = FakeCups({q: f"socket://127.0.0.1:91{i:02d}" for i, q in enumerate(PRINTERS)})
        self.spool = tmp_path / "spool"
        self.spool.mkdir(exist_ok=True)
        self.analysis = dict(ANALYSIS)
        self.analysed: list[str] = []
        self.timeout = timeout
        self.build()

    def build(self):
        self.link = ServerLink(self.clock)
        j = self.tmp / "journal"
        self.provider = PrintProvider(
            node="print01", clock=self.clock, link=self.link, cups=self.cups,
            analyse=self._analyse, journal=OfflineJournal(j / "offline"),
            held=HeldJobs(j / "held"), printers=PrinterCache(j / "printers.json"),
            decision_timeout=self.timeout, spool_dir=self.spool)

    def _analyse(self, path):
        self.analysed.append(path)
        return defer.succeed(dict(self.analysis))

    def connect(self, handlers):
        self.server = ServerSession({"printers.register": self.register, **handlers})
        self.link.attach(self.server)
        return self.server

    @staticmethod
    def register(fields):
        return {"printers": [dict(PRINTERS[p["queue"]], queue=p["queue"], name=p["queue"])
                             for p in fields["printers"]]}

    def job(self, queue="office", job_id=7, **extra):
        spool = self.spool / f"{queue}-{job_id}.spool"
        spool.write_bytes(b"%!PS\n")
        msg = {"op": "job", "queue": queue, "job_id": job_id, "user": "alice", "title": "report.pdf",
               "copies": 2, "options": "", "spool": str(spool), "device_uri": "socket://x",
               "content_type": "application/pdf", "stdin": False}
        msg.update(extra)
        return self.provider.handle_job(msg)


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def decide(action, **extra):
    def handler(fields):
        return {"action": action, "cost": "0.7000", "reason": extra.get("reason", ""),
                "uuid": fields["uuid"], "status": {"print": "printed", "deny": "denied",
                                                   "hold": "held"}[action]}
    return handler


def test_connect_registers_managed_queues_and_caches_them_on_disk(world):
    server = world.connect({})
    (call,) = server.ops("printers.register")
    assert sorted(p["queue"] for p in call["printers"]) == sorted(PRINTERS)
    assert world.provider.printers.get("careful")["failure_mode"] == "hold"
    # A restarted provider knows each printer's failure mode before any server answers.
    world.build()
    assert world.provider.printers.get("careful") == {
        "id": 3, "name": "careful", "failure_mode": "hold", "hold_mode": "none", "pdl": "ps"}


def test_job_is_analysed_and_the_servers_print_decision_is_passed_on(world):
    server = world.connect({"job.submit": decide("print")})
    reply = result(world.job())
    assert reply == {"action": "print", "reason": ""}
    (submit,) = server.ops("job.submit")
    assert submit["printer_id"] == 1 and submit["queue"] == "office"
    assert (submit["pages"], submit["colour_pages"], submit["copies"], submit["user"]) == (3, 1, 2, "alice")
    assert submit["document_name"] == "report.pdf" and submit["cups_job_id"] == 7
    assert len(world.provider.journal) == 0


def test_a_denied_job_gets_deny_with_the_servers_reason(world):
    world.connect({"job.submit": decide("deny", reason="too many pages: 300 (limit 100)")})
    assert result(world.job()) == {"action": "deny", "reason": "too many pages: 300 (limit 100)"}


def test_sides_option_overrides_the_analysis_and_filtered_data_holds_the_copies(world):
    server = world.connect({"job.submit": decide("print")})
    result(world.job(options="job-uuid=x sides=two-sided-long-edge", stdin=True))
    (submit,) = server.ops("job.submit")
    assert submit["duplex"] is True and submit["copies"] == 1
    assert duplex_from_options("sides=one-sided") is False
    assert duplex_from_options("media=A4") is None


def test_a_spool_file_outside_the_spool_directory_is_never_read(world, tmp_path):
    world.connect({"job.submit": decide("print")})
    elsewhere = tmp_path / "secret"
    elsewhere.write_text("x")
    reply = result(world.job(spool=str(elsewhere)))
    assert reply["action"] == "hold" and "spool directory" in reply["reason"]
    assert world.analysed == []


def test_print_log_later_journals_before_answering_and_replays_once_when_the_link_returns(world):
    reply = result(world.job())  # never connected: no printer cache, the default mode applies
    assert reply["action"] == "print"
    ((key, kind, record),) = world.provider.journal.entries()
    assert kind == "job.offline" and record["pages"] == 3 and record["copies"] == 2
    # The journal is on disk: a restarted provider still has it.
    world.build()
    assert len(world.provider.journal) == 1
    seen = []
    server = world.connect({"job.offline": lambda f: seen.append(f["uuid"]) or {"status": "printed"}})
    assert seen == [record["uuid"]]
    assert len(world.provider.journal) == 0
    assert len(server.ops("job.offline")) == 1


def test_replay_interrupted_by_the_link_keeps_the_entry_and_resends_the_same_uuid(world):
    result(world.job(job_id=1))
    result(world.job(job_id=2))
    uuids = [r["uuid"] for _, _, r in world.provider.journal.entries()]
    first = world.connect({})  # job.offline never answered ...
    assert len(first.ops("job.offline")) == 1
    first.drop()  # ... and the link drops: the server may or may not have recorded it
    assert len(world.provider.journal) == 2
    got = []
    world.connect({"job.offline": lambda f: got.append(f["uuid"]) or {}})
    assert got == uuids
    assert len(world.provider.journal) == 0


def offline_entries(world, n):
    """`n` jobs printed while no server answers (print-log-later); their uuids in order."""
    for i in range(n):
        result(world.job(job_id=100 + i))
    return [r["uuid"] for _, _, r in world.provider.journal.entries()]


def refuse(uuid, code, message="refused"):
    """A job.offline handler that refuses one uuid and acknowledges the others."""
    def handler(fields):
        if fields["uuid"] == uuid:
            raise RemoteError(code, message)
        return {"status": "printed", "charged": True}
    return handler


def test_an_entry_refused_for_good_is_quarantined_reported_and_never_blocks_the_rest(world):
    first, bad, last = offline_entries(world, 3)
    reports = []
    server = world.connect({"job.offline": refuse(bad, "invalid", "colour_pages: 5 must be ..."),
                            "journal.quarantined": lambda f: reports.append(f) or {"id": 1}})
    assert [f["uuid"] for f in server.ops("job.offline")] == [first, bad, last]
    assert len(world.provider.journal) == 0
    ((key, kept),) = world.provider.journal.quarantined()
    assert kept["record"]["uuid"] == bad and kept["kind"] == "job.offline"
    assert kept["error"] == {"code": "invalid", "message": "colour_pages: 5 must be ..."}
    assert kept["quarantined_at"] == world.clock.seconds() and kept["reported"] is True
    (report,) = reports
    assert report["key"] == key and report["uuid"] == bad and report["state"] == "quarantined"
    assert report["error"]["code"] == "invalid" and report["record"] == kept["record"]
    # Kept, never dropped; and reported once.
    world.provider.catch_up()
    assert len(reports) == 1 and len(world.provider.journal.quarantined()) == 1


@pytest.mark.parametrize("code", ["internal", "not_found", "forbidden", "conflict",
                                  "insufficient_funds", "unknown_op", "some_future_code"])
def test_any_refusal_but_unavailability_quarantines_the_entry(world, code):
    first, bad, last = offline_entries(world, 3)
    world.connect({"job.offline": refuse(bad, code), "journal.quarantined": lambda f: {}})
    assert len(world.provider.journal) == 0
    ((_, kept),) = world.provider.journal.quarantined()
    assert kept["record"]["uuid"] == bad and kept["error"]["code"] == code


@pytest.mark.parametrize("code", ["busy", "store_unavailable", "unavailable"])
def test_a_server_that_cannot_take_entries_now_stops_the_flush_and_keeps_them(world, code):
    first, second = offline_entries(world, 2)
    server = world.connect({"job.offline": refuse(first, code)})
    assert [f["uuid"] for f in server.ops("job.offline")] == [first]
    assert [r["uuid"] for _, _, r in world.provider.journal.entries()] == [first, second]
    assert world.provider.journal.quarantined() == []


def test_an_entry_that_cannot_be_sent_is_quarantined_without_being_sent(world):
    """A hand-edited or damaged journal: an unknown kind, a record that is not an object, a
    record with the protocol's own fields (one with `re` would be taken for a reply and never
    answered, blocking the journal)."""
    (good,) = offline_entries(world, 1)
    j = world.provider.journal
    j._put("000000000090-bogus", {"kind": "job.delete", "record": {"uuid": "x"}})
    j._put("000000000091-list", {"kind": "job.offline", "record": [1, 2]})
    j._put("000000000092-reply", {"kind": "job.offline", "record": {"uuid": "y", "re": 1, "ok": True}})
    server = world.connect({"job.offline": lambda f: {}, "journal.quarantined": lambda f: {}})
    assert [f["uuid"] for f in server.ops("job.offline")] == [good]
    codes = {k: e["error"]["code"] for k, e in j.quarantined()}
    assert codes == {"000000000090-bogus": "malformed", "000000000091-list": "malformed",
                     "000000000092-reply": "malformed"}
    assert len(server.ops("journal.quarantined")) == 3 and len(j) == 0


def test_a_retried_entry_goes_back_in_its_place_and_its_success_is_reported_resolved(world):
    first, bad = offline_entries(world, 2)
    refused = {bad}
    server = world.connect({
        "job.offline": lambda f: (_ for _ in ()).throw(RemoteError("not_found", "no user"))
        if f["uuid"] in refused else {},
        "journal.quarantined": lambda f: {"id": 7}})
    ((key, _),) = world.provider.journal.quarantined()
    refused.clear()   # the administrator created the user
    retry = world.provider.operations().handlers()["journal.retry"]
    assert retry(server, {"keys": [key, "000000000999-nope"]}) == {
        "restored": [key], "unknown": ["000000000999-nope"]}
    # Replayed at once (the retry kicks the catch-up), then reported resolved and forgotten.
    assert [f["uuid"] for f in server.ops("job.offline")] == [first, bad, bad]
    states = [f["state"] for f in server.ops("journal.quarantined")]
    assert states == ["quarantined", "resolved"]
    assert world.provider.journal.quarantined() == [] and len(world.provider.journal) == 0
    with pytest.raises(InvalidInput):
        retry(server, {"keys": "all"})


def test_a_retried_entry_refused_again_is_quarantined_again_with_the_new_error(world):
    (bad,) = offline_entries(world, 1)
    errors = iter([RemoteError("not_found", "no user"), RemoteError("invalid", "pages: bad")])

    def offline(fields):
        raise next(errors)

    server = world.connect({"job.offline": offline, "journal.quarantined": lambda f: {}})
    ((key, _),) = world.provider.journal.quarantined()
    world.provider.operations().handlers()["journal.retry"](server, {"keys": [key]})
    ((_, kept),) = world.provider.journal.quarantined()
    assert kept["error"]["code"] == "invalid" and kept["state"] == "quarantined"
    assert [f["error"]["code"] for f in server.ops("journal.quarantined")] == ["not_found", "invalid"]


def test_quarantine_reports_wait_for_a_server_that_can_take_them(world):
    (bad,) = offline_entries(world, 1)
    world.connect({"job.offline": refuse(bad, "invalid"),
                   "journal.quarantined": remote_error("unknown_op", "an older server")})
    ((_, kept),) = world.provider.journal.quarantined()
    assert kept["reported"] is False
    world.link.session.drop()
    reports = []
    world.connect({"journal.quarantined": lambda f: reports.append(f) or {}})
    assert len(reports) == 1 and world.provider.journal.unreported() == []


def test_quarantined_entries_survive_a_restart_and_new_entries_sort_after_them(world):
    (bad,) = offline_entries(world, 1)
    world.connect({"job.offline": refuse(bad, "invalid"), "journal.quarantined": lambda f: {}})
    ((key, _),) = world.provider.journal.quarantined()
    world.link.session.drop()
    world.build()
    assert [k for k, _ in world.provider.journal.quarantined()] == [key]
    result(world.job(job_id=200))
    ((new_key, _, _),) = world.provider.journal.entries()
    assert new_key > key


def test_entries_an_older_provider_rejected_are_adopted_into_the_quarantine(world, tmp_path):
    old = tmp_path / "journal" / "offline" / "rejected"
    old.mkdir(parents=True)
    (old / "000000000003-abc.json").write_text(json.dumps(
        {"kind": "job.offline", "record": {"uuid": "abc"}, "rejected": "invalid: pages: bad"}))
    world.build()
    ((key, kept),) = world.provider.journal.quarantined()
    assert key == "000000000003-abc" and kept["error"] == {"code": "invalid", "message": "pages: bad"}
    assert not any(old.iterdir())


def test_a_job_over_the_servers_limits_never_prints_while_no_server_answers(world):
    limits = {"max_copies": 10, "max_pages": 100, "max_total_pages": 500}
    world.register = lambda fields: {"printers": [
        dict(PRINTERS[p["queue"]], queue=p["queue"], name=p["queue"], limits=limits)
        for p in fields["printers"]]}
    world.connect({})
    world.link.session.drop()
    assert world.provider.printers.get("office")["limits"] == limits
    world.analysis.update(copies=4_294_967_295, pages=1, colour_pages=0)
    for queue in ("office", "nolog"):
        reply = result(world.job(queue))
        assert reply["action"] == "deny"
        assert reply["reason"].startswith("over the job limits: ")
        assert reply["reason"].endswith("(limit 10) (server unavailable)")
    assert len(world.provider.journal) == 0
    # Held, it is not printed either: the server decides (and logs) it when it answers.
    assert result(world.job("careful"))["action"] == "hold"
    world.analysis.update(copies=1, pages=101)
    assert result(world.job("office", job_id=8))["reason"].startswith(
        "over the job limits: 101 pages per copy (limit 100)")
    world.analysis.update(pages=3)
    assert result(world.job("office", job_id=9))["action"] == "print"


def test_without_limits_from_the_server_the_default_limits_apply_offline(world):
    world.analysis.update(copies=10_000, pages=1)   # never connected: nothing cached
    reply = result(world.job())
    assert (reply["action"], reply["reason"]) == (
        "deny", "over the job limits: 20000 copies (limit 9999) (server unavailable)")
    world.analysis.update(copies=1)
    assert result(world.job(job_id=8))["action"] == "print"


def test_no_answer_within_the_timeout_applies_the_printers_failure_mode(world):
    server = world.connect({})  # job.submit is never answered
    d = world.job("office")
    assert not d.called
    world.clock.advance(world.timeout)
    assert result(d)["action"] == "print"
    (entry,) = world.provider.journal.entries()
    assert entry[2]["uuid"] == server.ops("job.submit")[0]["uuid"]  # the same uuid: idempotent


def test_print_no_log_prints_and_records_nothing(world):
    world.connect({})
    world.link.session.drop()
    reply = result(world.job("nolog"))
    assert reply["action"] == "print" and "without logging" in reply["reason"]
    assert len(world.provider.journal) == 0 and len(world.provider.held) == 0


def test_hold_failure_mode_holds_then_asks_for_the_decision_when_the_link_returns(world):
    world.connect({})
    world.link.session.drop()
    assert result(world.job("careful", job_id=11))["action"] == "hold"
    (record,) = world.provider.held.all()
    assert record["state"] == "offline"
    server = world.connect({"job.submit": decide("print")})
    (submit,) = server.ops("job.submit")
    assert submit["uuid"] == record["uuid"]
    assert world.cups.released == [11]
    # CUPS runs the backend again: it prints, and is not reported again (job.submit charged it).
    assert result(world.job("careful", job_id=11))["action"] == "print"
    assert world.analysed[-1:] == [world.analysed[0]] and len(world.analysed) == 1
    assert len(world.provider.journal) == 0 and len(world.provider.held) == 0


def test_hold_failure_mode_cancels_the_cups_job_when_the_server_denies_it(world):
    world.connect({})
    world.link.session.drop()
    result(world.job("careful", job_id=12))
    world.connect({"job.submit": decide("deny", reason="insufficient balance")})
    assert world.cups.cancelled == [12] and len(world.provider.held) == 0


def test_a_held_job_prints_only_after_release_and_is_reported_printed(world):
    server = world.connect({"job.submit": decide("hold"), "job.printed": lambda f: {}})
    assert result(world.job("secure", job_id=20))["action"] == "hold"
    (record,) = world.provider.held.all()
    # CUPS re-runs it before any release (someone released it in CUPS): still held.
    assert result(world.job("secure", job_id=20))["action"] == "hold"
    result(world.provider.operations().handlers()["job.release"](server, {"uuid": record["uuid"]}))
    assert world.cups.released == [20]
    reply = result(world.job("secure", job_id=20))
    assert reply == {"action": "print", "reason": "released"}
    assert server.ops("job.printed") == [{"uuid": record["uuid"]}]
    assert len(world.provider.journal) == 0 and len(world.provider.held) == 0


def test_find_me_release_prints_on_the_target_device_and_reports_the_target_printer(world):
    server = world.connect({"job.submit": decide("hold"), "job.printed": lambda f: {}})
    result(world.job("findme", job_id=30))
    (record,) = world.provider.held.all()
    release = world.provider.operations().handlers()["job.release"]
    result(release(server, {"uuid": record["uuid"], "target_queue": "secure", "target_printer_id": 4}))
    reply = result(world.job("findme", job_id=30))
    assert reply["action"] == "print"
    assert reply["device_uri"] == world.cups.queues["secure"]
    assert server.ops("job.printed") == [{"uuid": record["uuid"], "printer_id": 4}]


def test_released_job_printed_while_the_link_is_down_is_reported_later(world):
    server = world.connect({"job.submit": decide("hold")})
    result(world.job("secure", job_id=21))
    (record,) = world.provider.held.all()
    result(world.provider.operations().handlers()["job.release"](server, {"uuid": record["uuid"]}))
    server.drop()
    assert result(world.job("secure", job_id=21))["action"] == "print"
    assert [k for _, k, _ in world.provider.journal.entries()] == ["job.printed"]
    got = []
    world.connect({"job.printed": lambda f: got.append(f) or {}})
    assert got == [{"uuid": record["uuid"]}]


def test_cancel_push_cancels_the_cups_job(world):
    server = world.connect({"job.submit": decide("hold")})
    result(world.job("secure", job_id=22))
    (record,) = world.provider.held.all()
    cancel = world.provider.operations().handlers()["job.cancel"]
    assert result(cancel(server, {"uuid": record["uuid"], "reason": "expired"})) == {"known": True}
    assert world.cups.cancelled == [22] and len(world.provider.held) == 0
    assert result(cancel(server, {"uuid": record["uuid"]})) == {"known": False}


def test_release_of_a_job_cups_already_finished_is_an_error_and_forgets_it(world):
    from pcnet.errors import NotFound

    server = world.connect({"job.submit": decide("hold")})
    result(world.job("secure", job_id=23))
    (record,) = world.provider.held.all()
    world.cups.finished.add(23)
    with pytest.raises(NotFound):
        result(world.provider.operations().handlers()["job.release"](server, {"uuid": record["uuid"]}))
    assert len(world.provider.held) == 0


def test_reconnect_catches_up_on_releases_and_expiries_missed_while_down(world):
    server = world.connect({"job.submit": decide("hold")})
    result(world.job("secure", job_id=40))
    result(world.job("secure", job_id=41))
    server.drop()
    by_job = {r["job_id"]: r["uuid"] for r in world.provider.held.all()}
    status = {by_job[40]: {"status": "released"}, by_job[41]: {"status": "expired"}}
    world.connect({"job.status": lambda f: status[f["uuid"]]})
    assert world.cups.released == [40] and world.cups.cancelled == [41]
    assert [r["state"] for r in world.provider.held.all()] == ["released"]


def test_held_jobs_survive_a_provider_restart(world):
    world.connect({"job.submit": decide("hold")})
    result(world.job("secure", job_id=50))
    world.build()
    (record,) = world.provider.held.all()
    assert world.provider.held.find("secure", 50) == record


def test_backend_protocol_answers_one_line_and_closes(world):
    world.connect({"job.submit": decide("print")})
    proto = BackendProtocol(world.provider)
    transport = StringTransport()
    proto.makeConnection(transport)
    spool = world.spool / "x.spool"
    spool.write_bytes(b"x")
    proto.dataReceived(json.dumps({"op": "job", "queue": "office", "job_id": 3, "user": "bob",
                                   "title": "t", "copies": 1, "options": "",
                                   "spool": str(spool)}).encode() + b"\n")
    assert json.loads(transport.value()) == {"action": "print", "reason": ""}
    assert transport.disconnecting


def test_backend_protocol_holds_on_a_malformed_request(world):
    proto = BackendProtocol(world.provider)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"{nope\n")
    assert json.loads(transport.value())["action"] == "hold"


def test_a_provider_bug_holds_the_job_rather_than_losing_it(world):
    world.connect({"job.submit": lambda f: 1 / 0})
    reply = result(world.job())
    # A non-PcnetError from the server side of the fake surfaces as an internal hold.
    assert reply["action"] == "hold"


def test_analysing_a_corrupt_file_falls_back_and_never_raises(tmp_path):
    bad = tmp_path / "bad.spool"
    bad.write_bytes(b"%PDF-1.7\n this is not a pdf \x00\xff")
    out = analyse_spool(str(bad))
    assert out["pages"] >= 1 and out["fallback"] is True and out["error"]


def test_absurd_claims_reach_the_server_bounded_and_flagged(tmp_path):
    """A PCL job asking for 4,294,967,295 copies of a million pages: the analysis reports the
    configured maxima + 1, so the job is 'over the limit', never a number that overflows."""
    from pcnet.spool import Limits

    spool = tmp_path / "flood.spool"
    spool.write_bytes(b"\x1bE\x1b&l4294967295X" + b"x\f" * 1_000_000)
    out = analyse_spool(str(spool), Limits(max_pages=500, max_copies=99))
    assert (out["pages"], out["copies"], out["fallback"]) == (501, 100, True)
    assert out["limits_hit"] == ["pages", "copies"]


def test_default_failure_mode_applies_to_unknown_queues(tmp_path):
    w = World(tmp_path)
    w.provider.default_failure_mode = FailureMode.HOLD
    assert result(w.job("office"))["action"] == "hold"


def test_a_job_cups_retries_soon_keeps_its_uuid_so_it_is_charged_once(world):
    server = world.connect({"job.submit": decide("print")})
    result(world.job("office", job_id=60))
    world.clock.advance(30)
    result(world.job("office", job_id=60))  # the printer's backend failed; CUPS retried it
    first, second = server.ops("job.submit")
    assert first["uuid"] == second["uuid"]
    world.clock.advance(3600)
    result(world.job("office", job_id=60))  # a reprint much later is a new job
    assert server.ops("job.submit")[2]["uuid"] != first["uuid"]


def test_the_decision_refreshes_the_printers_cached_failure_mode(world):
    def submit(fields):
        return {"action": "print", "cost": "0.1000", "reason": "", "uuid": fields["uuid"],
                "status": "printed", "printer": dict(PRINTERS["office"], queue="office",
                                                     name="office", failure_mode="hold")}
    world.connect({"job.submit": submit})
    result(world.job("office"))
    world.build()  # on disk
    assert world.provider.printers.get("office")["failure_mode"] == "hold"


def test_cups_work_cut_short_by_a_crash_is_finished_on_reconnect(world):
    server = world.connect({"job.submit": decide("hold")})
    result(world.job("secure", job_id=70))
    result(world.job("secure", job_id=71))
    result(world.job("secure", job_id=72))
    a, b, c = sorted(world.provider.held.all(), key=lambda r: r["job_id"])
    # Marked on disk, then the provider died before telling CUPS:
    world.provider.held.update(a["uuid"], state="released", report=True)
    world.provider.held.update(b["uuid"], state="cancelled", reason="expired")
    world.provider.held.update(c["uuid"], state="released", report=True)
    world.cups.finished.add(72)  # cancelled in CUPS by hand meanwhile
    server.drop()
    world.build()
    world.connect({"job.status": lambda f: {"status": "held"}})
    assert world.cups.released == [70] and world.cups.cancelled == [71]
    assert [r["job_id"] for r in world.provider.held.all()] == [70]
