"""End to end with the real thing: a private cupsd with AppSocket fake printers (cups_rig.py),
the pcnet CUPS backend, a real Print Provider (`twistd pcnet provider`) and a real Application
Server on SQLite (its own process), talking pcnet/1 over TLS on loopback.

`lp` a file -> the backend -> the provider analyses it and asks the server -> charged, and the
bytes reach the fake printer; a job over a filter limit is denied and never reaches it; a held
job prints only after release through the admin API; a Find-Me job prints at the printer it is
released at, at that printer's price; with the Application Server stopped each failure mode does
what it says, and after the restart nothing is lost and nothing is charged twice.

The tests share one deployment and run in order (each builds on the balance the last left).
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from cups_rig import GENERIC_POSTSCRIPT_PPD, CupsRig, wait_until
from pcnet.provider import cupsadmin
from pcnet.provider.cupsadmin import JobState
from pcnet_deploy import AppServer, ProviderProcess, pcnet1_hello

pytestmark = pytest.mark.integration

SPOOL = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "spool"
if not SPOOL.is_dir():
    SPOOL = Path("/work/shared/testdata/spool")
ONE_COLOUR_PAGE = SPOOL / "onepage-a4.pdf"   # 1 page, colour
TEN_PAGES = SPOOL / "colors.pdf"              # 10 pages, 6 colour

D = Decimal
GREY, COLOUR = D("0.1000"), D("0.5000")
FINISHED = [JobState.COMPLETED, JobState.CANCELED, JobState.ABORTED]
SETTLED = FINISHED + [JobState.HELD, JobState.STOPPED]

# queue -> (hold_mode, failure_mode, cost model)
QUEUES = {
    "office": ("none", "print-log-later", {"grey": "0.1000", "colour": "0.5000"}),
    "nolog": ("none", "print-no-log", {"grey": "0.1000", "colour": "0.5000"}),
    "careful": ("none", "hold", {"grey": "0.1000", "colour": "0.5000"}),
    "secure": ("hold", "hold", {"grey": "0.1000", "colour": "0.5000"}),
    "findme": ("find-me", "hold", {"grey": "0.1000", "colour": "0.5000"}),
    "colour": ("none", "print-log-later", {"grey": "0.2000", "colour": "1.2000"}),
    "filtered": ("none", "print-log-later", {"grey": "0.1000", "colour": "0.5000"}),
}


def _require():
    from conftest import _require_cups

    _require_cups()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    _require()
    root = tmp_path_factory.mktemp("e2e")
    rig = CupsRig()
    rig.provider_socket = rig.root / "provider.sock"
    rig.pcnet_spool_dir = rig.root / "pcnet-spool"
    rig.set_env.update({
        "PCNET_PROVIDER_SOCKET": str(rig.provider_socket),
        "PCNET_SPOOL_DIR": str(rig.pcnet_spool_dir),
        "PCNET_PROVIDER_WAIT": "5",
        "PCNET_PROVIDER_TIMEOUT": "60",
    })
    app = provider = None
    try:
        rig.start()
        rig.install_pcnet_backend()
        printers = {}
        for queue in QUEUES:
            printers[queue] = rig.add_printer(queue)
            rig.add_queue(queue, printers[queue].uri,
                          model=GENERIC_POSTSCRIPT_PPD if queue == "filtered" else "raw")
            cupsadmin.wrap_queue(rig.connect(), queue)
        # No auto-approve network: the provider enrols with the code an administrator issued.
        app = AppServer(root, auto_approve_networks=()).start()
        app.api("POST", "/users", {"username": "alice", "initial_balance": "10.0000"})
        ids = {}
        for queue, (hold, failure, cost) in QUEUES.items():
            created = app.api("POST", "/printers", {
                "name": queue, "server": "print01", "queue": queue, "hold_mode": hold,
                "failure_mode": failure, "cost_model": cost, "pdl": "raw",
                "filters": {"max_pages": 8}})
            ids[queue] = created["id"]
        squatted = pcnet1_hello(app, node="print01", credential="squatter-" + "x" * 40)
        invitation = app.api("POST", "/node-invitations", {"name": "print01"})
        provider = ProviderProcess(root, app, rig, enrolment_code=invitation["code"]).start()
        provider.wait_registered(1)
        provider.squatted = squatted
        yield Deployment(rig, app, provider, printers, ids)
    finally:
        if provider is not None:
            provider.stop()
        if app is not None:
            app.stop()
        rig.cleanup()
        shutil.rmtree(root, ignore_errors=True)


class Deployment:
    def __init__(self, rig, app, provider, printers, ids):
        self.rig, self.app, self.provider, self.printers, self.ids = rig, app, provider, printers, ids

    def balance(self) -> Decimal:
        return D(self.app.api("GET", "/users/alice/account")["balance"])

    def lp(self, queue, path, title):
        return self.rig.submit(queue, path, title=title, user="alice")

    def jobs(self, **query) -> list[dict]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return self.app.api("GET", f"/jobs?user=alice&limit=1000&{qs}")["items"]

    def job_titled(self, title) -> dict:
        (job,) = [j for j in self.jobs() if j["document_name"] == title]
        return job

    def wait_job(self, job_id, states=SETTLED, timeout=60):
        try:
            return self.rig.wait_for_job_state(job_id, states, timeout=timeout)
        except Exception as e:
            raise AssertionError(f"{e}\n--- provider ---\n{self.provider.log_tail()}\n"
                                 f"--- app ---\n{self.app.log_tail()}") from None

    def wait_held_in_log(self, title, timeout=30) -> dict:
        return wait_until(lambda: next((j for j in self.jobs(status="held")
                                        if j["document_name"] == title), None),
                          timeout, f"job {title!r} held in the job log")


def test_the_provider_enrolled_with_its_code_and_nobody_can_take_its_name(deployment):
    """Before the provider started, a stranger said hello as print01: refused, nothing recorded.
    The provider enrolled with its one-time code; the spent code and other credentials are
    refused; unknown names leave no rows."""
    d = deployment
    assert d.provider.squatted["error"]["code"] == "rejected"
    (node,) = d.app.api("GET", "/nodes")["items"]
    assert (node["name"], node["role"], node["status"], node["address"]) == (
        "print01", "provider", "approved", "127.0.0.1")
    assert d.app.api("GET", "/node-invitations")["items"] == []
    code = d.provider.config.read_text().split('enrolment_code = "', 1)[1].split('"', 1)[0]
    for name, extra in (("print01", {"enrolment_code": code}), ("print01", {}), ("print99", {})):
        reply = pcnet1_hello(d.app, node=name, credential="squatter-" + "y" * 40, **extra)
        assert reply["error"]["code"] == "rejected", reply
    assert [n["name"] for n in d.app.api("GET", "/nodes")["items"]] == ["print01"]
    log = d.app.log_tail(400)
    assert code not in log and "squatter-" not in log and code not in d.provider.log_text()
    assert "enrolled with an enrolment code" in log


def test_a_job_is_analysed_charged_and_its_bytes_reach_the_printer(deployment):
    d = deployment
    before = d.balance()
    job_id = d.lp("office", ONE_COLOUR_PAGE, "one colour page")
    assert d.wait_job(job_id) == JobState.COMPLETED
    assert d.printers["office"].wait_for(1) == [ONE_COLOUR_PAGE.read_bytes()]
    job = d.job_titled("one colour page")
    assert (job["status"], job["pages"], job["colour_pages"], job["cost"]) == ("printed", 1, 1, "0.5000")
    assert job["origin"] == "print01" and job["printer_id"] == d.ids["office"]
    assert d.balance() == before - COLOUR


def test_a_job_through_a_queues_filters_is_analysed_as_filtered(deployment):
    """On a queue with a PPD the backend gets the filters' PostScript (on stdin): that is what
    is analysed, and it reaches the printer."""
    d = deployment
    before = d.balance()
    job_id = d.lp("filtered", TEN_PAGES, "ten pages filtered")
    assert d.wait_job(job_id, timeout=90) == JobState.CANCELED  # 10 pages > the limit of 8
    assert d.job_titled("ten pages filtered")["pages"] == 10
    job_id = d.lp("filtered", ONE_COLOUR_PAGE, "one page filtered")
    assert d.wait_job(job_id, timeout=90) == JobState.COMPLETED
    (received,) = d.printers["filtered"].wait_for(1)
    assert received.lstrip(b"\x04").startswith(b"%!PS")
    job = d.job_titled("one page filtered")
    assert (job["status"], job["pages"], job["colour_pages"]) == ("printed", 1, 1)
    assert d.balance() == before - D(job["cost"])


def test_a_job_over_a_filter_limit_is_denied_and_never_reaches_the_printer(deployment):
    d = deployment
    before = d.balance()
    received = len(d.printers["office"].received())
    job_id = d.lp("office", TEN_PAGES, "ten pages")
    assert d.wait_job(job_id) == JobState.CANCELED
    job = d.job_titled("ten pages")
    assert job["status"] == "denied" and "too many pages" in job["reason"]
    assert len(d.printers["office"].received()) == received
    assert d.balance() == before


def test_a_held_job_prints_only_after_release_through_the_api_and_is_charged_then(deployment):
    d = deployment
    before = d.balance()
    job_id = d.lp("secure", ONE_COLOUR_PAGE, "held report")
    assert d.wait_job(job_id) == JobState.HELD
    held = d.wait_held_in_log("held report")
    assert d.printers["secure"].received() == []
    assert d.balance() == before  # held: not charged
    listed = d.app.api("GET", "/held-jobs")["items"]
    assert held["uuid"] in [j["uuid"] for j in listed]
    d.app.api("POST", f"/held-jobs/{held['uuid']}/release", {})
    assert d.wait_job(job_id, FINISHED) == JobState.COMPLETED
    assert d.printers["secure"].wait_for(1) == [ONE_COLOUR_PAGE.read_bytes()]
    wait_until(lambda: d.job_titled("held report")["status"] == "printed", 20, "job.printed")
    assert d.balance() == before - COLOUR


def test_a_cancelled_held_job_never_prints(deployment):
    d = deployment
    before = d.balance()
    job_id = d.lp("secure", ONE_COLOUR_PAGE, "cancel me")
    assert d.wait_job(job_id) == JobState.HELD
    held = d.wait_held_in_log("cancel me")
    d.app.api("POST", f"/held-jobs/{held['uuid']}/cancel", {})
    assert d.wait_job(job_id, FINISHED) == JobState.CANCELED
    assert d.job_titled("cancel me")["status"] == "cancelled"
    assert len(d.printers["secure"].received()) == 1  # only the released one before
    assert d.balance() == before


def test_find_me_prints_where_it_is_released_at_that_printers_price(deployment):
    d = deployment
    before = d.balance()
    job_id = d.lp("findme", ONE_COLOUR_PAGE, "find me")
    assert d.wait_job(job_id) == JobState.HELD
    held = d.wait_held_in_log("find me")
    d.app.api("POST", f"/held-jobs/{held['uuid']}/release", {"printer": d.ids["colour"]})
    assert d.wait_job(job_id, FINISHED) == JobState.COMPLETED
    assert d.printers["colour"].wait_for(1) == [ONE_COLOUR_PAGE.read_bytes()]
    assert d.printers["findme"].received() == []
    wait_until(lambda: d.job_titled("find me")["status"] == "printed", 20, "job.printed")
    assert d.balance() == before - D("1.2000")  # the colour printer's colour price


def test_with_the_server_down_each_failure_mode_does_what_it_says(deployment):
    d = deployment
    before = d.balance()
    seen_office = len(d.printers["office"].received())
    d.app.stop()
    wait_until(lambda: "link to the server is down" in d.provider.log_text(), 20, "link down")

    # print-log-later: prints now, journaled on the provider's disk.
    logged = d.lp("office", ONE_COLOUR_PAGE, "offline logged")
    assert d.wait_job(logged) == JobState.COMPLETED
    assert len(d.printers["office"].wait_for(seen_office + 1)) == seen_office + 1
    assert len(d.provider.journal_entries()) == 1
    # print-no-log: prints, never recorded.
    unlogged = d.lp("nolog", ONE_COLOUR_PAGE, "offline unlogged")
    assert d.wait_job(unlogged) == JobState.COMPLETED
    assert d.printers["nolog"].wait_for(1)
    # hold: kept in CUPS until the server answers.
    careful = d.lp("careful", ONE_COLOUR_PAGE, "offline held")
    assert d.wait_job(careful) == JobState.HELD
    assert d.printers["careful"].received() == []

    # The provider restarts while the server is still down: its journal and holds survive.
    d.provider.stop()
    d.provider.start()

    d.app.start()
    # The journal is replayed; the held job gets its decision (print) and prints.
    assert d.wait_job(careful, FINISHED, timeout=60) == JobState.COMPLETED
    assert d.printers["careful"].wait_for(1) == [ONE_COLOUR_PAGE.read_bytes()]
    wait_until(lambda: not d.provider.journal_entries(), 30, "the journal to be replayed")
    logged_job = d.job_titled("offline logged")
    assert logged_job["status"] == "printed" and logged_job["cost"] == "0.5000"
    assert d.job_titled("offline held")["status"] == "printed"
    assert not [j for j in d.jobs() if j["document_name"] == "offline unlogged"]
    assert d.balance() == before - 2 * COLOUR

    # Restart both again: nothing is replayed twice, nothing charged twice.
    d.provider.stop()
    d.app.stop()
    d.app.start()
    d.provider.start()
    d.provider.wait_registered(3)
    assert d.balance() == before - 2 * COLOUR
    assert len([j for j in d.jobs() if j["document_name"].startswith("offline")]) == 2
