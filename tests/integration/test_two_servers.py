"""Two Application Servers on one PostgreSQL, each its own process with its own ports, both
serving the admin API and pcnet/1 at once (docs/ha.md):

- a price changed through one is charged by the other within 2 s (LISTEN/NOTIFY);
- charges arriving at both at once for one restricted account never take it below its
  limit, and its balance is the sum of its transactions afterwards;
- a real Print Provider configured with both servers fails over when the one it uses is
  killed with kill -9, and back when it returns; every job it was given is in the job log
  exactly once and charged exactly once.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from cups_rig import CupsRig, wait_until
from pcnet.provider import cupsadmin
from pcnet_deploy import AppServer, ApiError, ProviderProcess
from tests.support.db import postgres_database, postgres_url, skip_unless_postgres_enabled

pytestmark = pytest.mark.integration

D = Decimal
SPOOL = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "spool"
if not SPOOL.is_dir():
    SPOOL = Path("/work/shared/testdata/spool")
ONE_PAGE = SPOOL / "onepage-a4.pdf"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    skip_unless_postgres_enabled()
    root = tmp_path_factory.mktemp("pair")
    with postgres_database("pcnet_pair") as dsn:
        a = AppServer(root, database=postgres_url(dsn), name="app1")
        b = AppServer(root, join=a, name="app2")
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            b.stop()
            a.stop()
            shutil.rmtree(root, ignore_errors=True)


def job(app, username, printer, **kw):
    return app.api("POST", "/jobs/import", {"username": username, "printer": printer, "pages": 1, **kw})


def test_both_servers_are_healthy_and_say_who_they_are(pair):
    a, b = pair
    for app in pair:
        status, report = app.health()
        assert status == 200 and report["status"] == "ok"
        assert report["node"] == app.name and report["changes"]["watching"] == "listen"
        assert report["database"]["migrations_current"] is True


def test_a_price_changed_through_one_server_is_charged_by_the_other_within_2_s(pair):
    a, b = pair
    a.api("POST", "/users", {"username": "paul", "initial_balance": "100.00", "restricted": False})
    printer = a.api("POST", "/printers", {"name": "hall", "cost_model": {"grey": "0.10", "colour": "0.10"}})
    assert D(job(b, "paul", "hall")["decision"]["cost"]) == D("0.10")   # b has it cached now
    a.api("PATCH", f"/printers/{printer['id']}", {"cost_model": {"grey": "0.25", "colour": "0.25"}})
    start = time.monotonic()
    while D(job(b, "paul", "hall")["decision"]["cost"]) != D("0.25"):
        assert time.monotonic() - start < 10, b.log_tail()
        time.sleep(0.05)
    assert time.monotonic() - start <= 2.0
    # And a top-up through b is seen by a (a's cached balance rises).
    rita = b.api("POST", "/users", {"username": "rosa", "initial_balance": "0.00", "restricted": True})
    assert job(a, "rosa", "hall")["decision"]["action"] == "deny"
    b.api("POST", f"/accounts/{rita['personal_account_id']}/adjust", {"amount": "1.00"})
    start = time.monotonic()
    while job(a, "rosa", "hall")["decision"]["action"] != "print":
        assert time.monotonic() - start < 10, a.log_tail()
        time.sleep(0.05)
    assert time.monotonic() - start <= 2.0


def test_charges_at_both_servers_never_take_a_restricted_account_below_its_limit(pair):
    a, b = pair
    user = a.api("POST", "/users", {"username": "rita", "initial_balance": "1.00", "restricted": True})
    a.api("POST", "/printers", {"name": "desk", "cost_model": {"grey": "0.10", "colour": "0.10"}})
    account = user["personal_account_id"]
    # Both servers have the account cached with its full balance before the rush.
    assert job(a, "rita", "desk")["decision"]["action"] == "print"
    assert job(b, "rita", "desk")["decision"]["action"] == "print"

    def one(i):
        return job(a if i % 2 else b, "rita", "desk", document_name=f"rush-{i}")["decision"]["action"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        actions = list(pool.map(one, range(40)))
    assert actions.count("print") == 8 and actions.count("deny") == 32
    balance = D(a.api("GET", f"/accounts/{account}")["balance"])
    assert balance == D("0.0000")
    txns = a.api("GET", f"/accounts/{account}/transactions?limit=1000")["items"]
    assert sum(D(t["amount"]) for t in txns) == balance
    assert len([t for t in txns if t["kind"] == "charge"]) == 10


# --- a provider that fails over --------------------------------------------------------------------


def _require_cups():
    from conftest import _require_cups

    _require_cups()


class Backend:
    """Talks to the provider's backend socket as the pcnet CUPS backend does (docs/cups.md):
    one connection per job, one JSON line each way."""

    def __init__(self, rig):
        self.rig = rig
        self.spool = Path(rig.pcnet_spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)

    def job(self, job_id: int, title: str) -> dict:
        path = self.spool / f"office-{job_id}-test.spool"
        shutil.copyfile(ONE_PAGE, path)
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(60)
                s.connect(str(self.rig.provider_socket))
                s.sendall(json.dumps({"op": "job", "queue": "office", "job_id": job_id,
                                      "user": "alice", "title": title, "copies": 1,
                                      "spool": str(path), "stdin": False,
                                      "device_uri": "socket://127.0.0.1:9"}).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            return json.loads(data)
        finally:
            path.unlink(missing_ok=True)


@pytest.fixture
def provider_pair(pair, tmp_path):
    _require_cups()
    a, b = pair
    rig = CupsRig()
    rig.provider_socket = rig.root / "provider.sock"
    rig.pcnet_spool_dir = rig.root / "pcnet-spool"
    provider = None
    try:
        rig.start()
        rig.install_pcnet_backend()
        printer = rig.add_printer("office")
        rig.add_queue("office", printer.uri)
        cupsadmin.wrap_queue(rig.connect(), "office")
        a.api("POST", "/printers", {"name": "office", "server": "print01", "queue": "office",
                                    "failure_mode": "print-log-later", "pdl": "raw",
                                    "cost_model": {"grey": "0.10", "colour": "0.10"}})
        a.api("POST", "/users", {"username": "alice", "initial_balance": "100.00", "restricted": False})
        provider = ProviderProcess(tmp_path, a, rig, servers=[a, b], failback_interval=1,
                                   decision_timeout=5).start()
        provider.wait_registered(1)
        yield a, b, provider, Backend(rig)
    finally:
        if provider is not None:
            provider.stop()
        rig.cleanup()


def test_a_provider_with_both_servers_fails_over_on_kill_9_and_loses_and_doubles_nothing(provider_pair):
    a, b, provider, backend = provider_pair
    n, killed_after = 40, 12
    replies: dict[int, dict] = {}
    done = threading.Semaphore(0)

    def submit(i):
        replies[i] = backend.job(1000 + i, f"failover-{i}")
        done.release()

    threads = []
    for i in range(n):
        t = threading.Thread(target=submit, args=(i,))
        t.start()
        threads.append(t)
        if i < killed_after:
            t.join()          # these go one by one to app1
        if i == killed_after:
            a.kill()          # kill -9 of the server the provider is connected to
        time.sleep(0.02)
    for t in threads:
        t.join(timeout=120)
    assert sorted(replies) == list(range(n))
    assert all(r["action"] == "print" for r in replies.values()), replies

    def all_recorded():
        jobs = b.api("GET", "/jobs?user=alice&limit=1000")["items"]
        return len([j for j in jobs if j["document_name"].startswith("failover-")]) >= n \
            and not provider.journal_entries()

    try:
        wait_until(all_recorded, 90, "every job in app2's job log and the journal empty")
    except Exception as e:
        raise AssertionError(f"{e}\n--- provider ---\n{provider.log_tail()}\n--- app2 ---\n{b.log_tail()}")
    jobs = [j for j in b.api("GET", "/jobs?user=alice&limit=1000")["items"]
            if j["document_name"].startswith("failover-")]
    titles = sorted(j["document_name"] for j in jobs)
    assert titles == sorted(f"failover-{i}" for i in range(n))    # each exactly once
    assert all(j["status"] == "printed" for j in jobs)
    user = b.api("GET", "/users/alice")
    account = user["personal_account_id"]
    txns = b.api("GET", f"/accounts/{account}/transactions?limit=1000")["items"]
    charges = [t for t in txns if t["kind"] == "charge"]
    assert len(charges) == n and len({t["reference"] for t in charges}) == n
    balance = D(b.api("GET", f"/accounts/{account}")["balance"])
    assert balance == D("100.00") - n * D("0.10") == sum(D(t["amount"]) for t in txns)
    log = provider.log_text()
    assert "NoTransition" not in log and "Traceback" not in log
    assert "connected to server" in log and f"port={b.http_port}" in log

    # app1 comes back: the provider goes back to it (failback_interval 1 s) and jobs go on.
    a.start()
    try:
        wait_until(lambda: "pcnet/1 provider 'print01' connected" in a.log_tail(200), 30,
                   "the provider to fail back to app1")
    except Exception as e:
        raise AssertionError(f"{e}\n--- provider ---\n{provider.log_tail()}")
    assert backend.job(2000, "after-failback")["action"] == "print"
    wait_until(lambda: any(j["document_name"] == "after-failback" for j in
                           a.api("GET", "/jobs?user=alice&limit=1000")["items"]), 30, "the job")


def test_the_api_of_a_killed_server_is_gone_but_its_partner_answers(pair):
    a, b = pair
    if not a.process.alive:
        a.start()
    assert b.api("GET", "/printers")["total"] >= 1
    with pytest.raises(ApiError):
        b.api("GET", "/printers/999999")
