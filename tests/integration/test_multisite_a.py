"""Deployment A (issue 9) on separate hosts, as far as it exists today: one Application Server
at the centre, two print servers at two other sites, each its own host behind the router
(hosts.py) with its own cupsd, fake printers and Print Provider (`twistd pcnet provider`), the
Application Server a `twistd pcnet app` process — on SQLite, and again on a PostgreSQL server
running inside the centre's host.

Real files are printed with `lp` on both print servers and charged to one ledger, which the test
checks through the admin API against what it computes itself from the files' known page and
colour counts (../shared/testdata/README.md) and the prices it set. A silent cut between print
server 2 and the centre (nftables in the router) makes print server 2's print-log-later queue
print at once and journal the job, while print server 1 is charged live; after the link is
restored the journal is replayed and the ledger is exact. With site 1's WAN veth taken down, a
queue whose failure mode is hold keeps its job until the link is back, then prints and charges.
(Find-Me across print servers does not exist yet.)

The tests of one engine share one deployment and run in order: each builds on the ledger the
last one left.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path

import pytest

from cups_rig import wait_until
from hosts import Network, Postgres
from pcnet.provider.cupsadmin import JobState
from pcnet_deploy import AppServer, PrintServer, pcnet1_hello

pytestmark = pytest.mark.integration

SPOOL = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "spool"
if not SPOOL.is_dir():
    SPOOL = Path("/work/shared/testdata/spool")

D = Decimal
#: file -> (pages, colour pages), from ../shared/testdata/README.md: the test's own answer key.
KNOWN = {
    "colors.pdf": (10, 6),
    "testfile.pdf": (8, 1),
    "onepage-a4.pdf": (1, 1),
    "onepage-a4.ps": (1, 1),
    "testfile.ps": (1, 1),
    "testfile.pcl": (1, 0),
}
#: printer (= CUPS queue) -> (node, hold mode, failure mode, grey price, colour price)
PRINTERS = {
    "office1": ("print01", "none", "print-log-later", "0.1000", "0.5000"),
    "careful1": ("print01", "none", "hold", "0.1500", "0.6000"),
    "colour2": ("print02", "none", "print-log-later", "0.2000", "1.2000"),
}
INITIAL = D("50.0000")
FINISHED = [JobState.COMPLETED, JobState.CANCELED, JobState.ABORTED]
SETTLED = FINISHED + [JobState.HELD, JobState.STOPPED]


def _require_cups():
    from conftest import _require_cups as require

    require()


class ScenarioA:
    def __init__(self, net, app, servers, pg, stranger):
        self.net, self.app, self.servers, self.pg = net, app, servers, pg
        self.stranger = stranger
        self.expected: dict[str, Decimal] = {}  # job title -> the cost the test computed

    def server_of(self, queue: str) -> PrintServer:
        return self.servers[PRINTERS[queue][0]]

    def cost(self, queue: str, file: str) -> Decimal:
        pages, colour = KNOWN[file]
        grey_price, colour_price = (D(p) for p in PRINTERS[queue][3:])
        return (pages - colour) * grey_price + colour * colour_price

    def lp(self, queue: str, file: str, title: str) -> int:
        """Print `file` on `queue`'s print server; what it should cost goes in the test's own
        ledger, once it prints."""
        assert title not in self.expected
        return self.server_of(queue).lp(queue, SPOOL / file, title=title, user="alice")

    def printed(self, queue: str, file: str, title: str) -> None:
        self.expected[title] = self.cost(queue, file)

    def wait(self, queue: str, job_id: int, states=SETTLED, timeout: float = 60) -> int:
        return self.server_of(queue).wait_job(job_id, states, timeout)

    def balance(self) -> Decimal:
        return D(self.app.api("GET", "/users/alice/account")["balance"])

    def jobs(self) -> dict[str, dict]:
        items = self.app.api("GET", "/jobs?user=alice&limit=1000")["items"]
        return {j["document_name"]: j for j in items}

    def ledger(self) -> list[dict]:
        account = self.app.api("GET", "/users/alice/account")["id"]
        return self.app.api("GET", f"/accounts/{account}/transactions?limit=1000")["items"]

    def check_ledger(self) -> None:
        """The centre's ledger is exactly the test's: one charge per printed job, of the cost
        the test computed, no transaction twice, and the balance that leaves."""
        rows = self.ledger()
        uuids = [r["uuid"] for r in rows]
        assert len(uuids) == len(set(uuids)), f"a transaction uuid twice: {uuids}"
        charges = [r for r in rows if r["kind"] == "charge"]
        assert sorted(-D(r["amount"]) for r in charges) == sorted(self.expected.values()), (
            charges, self.expected)
        assert len({r["reference"] for r in charges}) == len(charges)  # each job charged once
        assert [r["kind"] for r in rows if r["kind"] != "charge"] == ["initial"]
        assert self.balance() == INITIAL - sum(self.expected.values())
        jobs = self.jobs()
        for title, cost in self.expected.items():
            assert (jobs[title]["status"], D(jobs[title]["cost"])) == ("printed", cost), jobs[title]

    def diagnostics(self) -> str:
        parts = [f"--- app ---\n{self.app.log_tail()}"]
        parts += [f"--- {node} ---\n{s.provider.log_tail()}" for node, s in self.servers.items()]
        return "\n".join(parts)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scenario(request, hosts_run):
    _require_cups()
    with Network(hosts_run) as net:
        centre, site1, site2 = net.add_site("centre"), net.add_site("site1"), net.add_site("site2")
        app_host, host1, host2 = centre.add_host("app"), site1.add_host("print1"), site2.add_host("print2")
        pg = database = None
        if request.param == "postgresql":
            pg = Postgres(app_host).start()
            database = pg.create_database("pcnet")
        # Site 2's network is trusted to enrol without a code; print server 1 needs one.
        app = AppServer(app_host.dir, host=app_host, database=database,
                        auto_approve_networks=(str(site2.subnet),)).start()
        servers = {}
        try:
            app.api("POST", "/users", {"username": "alice", "initial_balance": str(INITIAL)})
            for queue, (node, hold, failure, grey, colour) in PRINTERS.items():
                app.api("POST", "/printers", {
                    "name": queue, "server": node, "queue": queue, "hold_mode": hold,
                    "failure_mode": failure, "cost_model": {"grey": grey, "colour": colour},
                    "pdl": "raw"})
            # A stranger on site 1 claiming print01's name before it enrolled: turned away.
            stranger = pcnet1_hello(app, node="print01", credential=secrets.token_urlsafe(32), source=host1)
            code = app.api("POST", "/node-invitations", {"name": "print01"})["code"]
            for node, host, enrolment in (("print01", host1, code), ("print02", host2, "")):
                queues = [q for q, spec in PRINTERS.items() if spec[0] == node]
                servers[node] = PrintServer(host, app, node=node, queues=queues, enrolment_code=enrolment,
                                            decision_timeout=3).start()
            for server in servers.values():
                server.provider.wait_registered(1)
            yield ScenarioA(net, app, servers, pg, stranger)
        finally:
            for server in servers.values():
                server.close()
            app.stop()


def test_each_print_server_enrols_from_its_own_host_through_the_router(scenario):
    """print01 enrolled with its one-time code (spent), print02 from the auto-approved site 2
    network; the centre sees each at its own host's address, so their traffic was routed between
    the sites, not translated or sent over loopback; the stranger got nothing."""
    s = scenario
    assert s.stranger["error"]["code"] == "rejected"
    nodes = {n["name"]: n for n in s.app.api("GET", "/nodes")["items"]}
    assert sorted(nodes) == ["print01", "print02"]
    for name, host in (("print01", "print1"), ("print02", "print2")):
        assert (nodes[name]["role"], nodes[name]["status"], nodes[name]["address"]) == (
            "provider", "approved", s.net.hosts[host].ip)
    assert s.app.api("GET", "/node-invitations")["items"] == []
    assert "enrolled with an enrolment code" in s.app.log_text()


def test_jobs_from_both_print_servers_are_charged_to_one_ledger(scenario):
    s = scenario
    jobs = [("office1", "colors.pdf", "colours at print01"), ("office1", "testfile.pdf", "diagram at print01"),
            ("colour2", "onepage-a4.pdf", "one page at print02"), ("colour2", "testfile.pcl", "pcl at print02")]
    submitted = [(queue, file, title, s.lp(queue, file, title)) for queue, file, title in jobs]
    for queue, file, title, job_id in submitted:
        assert s.wait(queue, job_id) == JobState.COMPLETED, s.diagnostics()
        s.printed(queue, file, title)
    for queue in ("office1", "colour2"):
        files = [file for q, file, _t, _j in submitted if q == queue]
        received = s.server_of(queue).printers[queue].wait_for(len(files))
        assert sorted(received) == sorted((SPOOL / f).read_bytes() for f in files)
    logged = s.jobs()
    for queue, file, title, _job_id in submitted:
        pages, colour = KNOWN[file]
        assert (logged[title]["pages"], logged[title]["colour_pages"], logged[title]["origin"]) == (
            pages, colour, PRINTERS[queue][0])
    s.check_ledger()
    assert s.balance() == INITIAL - D("3.4000") - D("1.2000") - D("1.2000") - D("0.2000")


def test_a_silent_cut_of_print_server_2_prints_now_and_charges_exactly_once_after_restore(scenario):
    """During the cut print02 gets no answer (its request vanishes: no RST), so its
    print-log-later queue prints and journals the job; print01 at the other site is charged live
    all along. After the restore the journal is replayed: the ledger is exact, nothing twice."""
    s = scenario
    site2 = s.net.sites["site2"]
    before = s.balance()
    outage = site2.cut()
    try:
        offline = s.lp("colour2", "onepage-a4.ps", "offline at print02")
        live = s.lp("office1", "testfile.ps", "live at print01")
        assert s.wait("office1", live) == JobState.COMPLETED, s.diagnostics()
        s.printed("office1", "testfile.ps", "live at print01")
        assert s.wait("colour2", offline) == JobState.COMPLETED, s.diagnostics()
        assert s.server_of("colour2").printers["colour2"].wait_for(3)[-1] == (SPOOL / "onepage-a4.ps").read_bytes()
        provider2 = s.servers["print02"].provider
        assert len(provider2.journal_entries()) == 1
        assert "failure mode" in provider2.log_text()
        # Only print01's job reached the ledger while the link was cut.
        assert s.balance() == before - s.cost("office1", "testfile.ps")
        assert "offline at print02" not in s.jobs()
        assert outage.active
    finally:
        site2.restore()
    s.printed("colour2", "onepage-a4.ps", "offline at print02")
    wait_until(lambda: not provider2.journal_entries(), 60, "print02's journal to be replayed")
    wait_until(lambda: "offline at print02" in s.jobs(), 30, "the offline job in the job log")
    assert s.jobs()["offline at print02"]["origin"] == "print02"
    s.check_ledger()


def test_with_site_1s_wan_veth_down_a_hold_queue_keeps_the_job_until_the_link_returns(scenario):
    s = scenario
    site1 = s.net.sites["site1"]
    site1.link_down()
    try:
        job_id = s.lp("careful1", "onepage-a4.pdf", "held while site 1 is down")
        assert s.wait("careful1", job_id) == JobState.HELD, s.diagnostics()
        assert s.server_of("careful1").printers["careful1"].received() == []
        assert "held while site 1 is down" not in s.jobs()
    finally:
        site1.link_up()
    assert s.wait("careful1", job_id, FINISHED, timeout=90) == JobState.COMPLETED, s.diagnostics()
    assert s.server_of("careful1").printers["careful1"].wait_for(1) == [(SPOOL / "onepage-a4.pdf").read_bytes()]
    s.printed("careful1", "onepage-a4.pdf", "held while site 1 is down")
    wait_until(lambda: s.jobs().get("held while site 1 is down", {}).get("status") == "printed", 30,
               "the held job printed in the job log")
    s.check_ledger()


def test_the_ledger_the_api_showed_is_the_database_of_the_centre(scenario):
    """On PostgreSQL the ledger lives in the server inside the centre's host (the Application
    Server reaches it at the host's address); on SQLite, in the file of its data directory. The
    charges read from the database itself are the test's."""
    s = scenario
    url = s.app.config.read_text().split('url = "', 1)[1].split('"', 1)[0]
    query = "SELECT count(*), -sum(amount) FROM transactions WHERE kind = 'charge'"
    if s.pg is not None:
        assert url == s.pg.url("pcnet") and s.pg.host is s.net.hosts["app"]
        count, total = s.pg.psql(query, "pcnet").strip().split("|")
    else:
        import sqlite3

        assert url == "sqlite:///pcnet.db"
        with sqlite3.connect(s.app.data_dir / "pcnet.db") as db:
            count, total = db.execute(query).fetchone()
    assert (int(count), D(int(total)) / 10000) == (len(s.expected), sum(s.expected.values()))
