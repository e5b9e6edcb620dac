"""Writes by another process reach a running server's charging within 2 s, without a restart:
the real `pcnet import-printers` command against a real Application Server process, on SQLite
(the server notices another writer by PRAGMA data_version) and on PostgreSQL (LISTEN/NOTIFY).

The server's cache is warmed first (a job is charged at the old price), so the new price can
only come from the change reaching the cache."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from pcnet_deploy import AppServer
from tests.support.db import postgres_database, postgres_url, skip_unless_postgres_enabled

pytestmark = pytest.mark.integration

D = Decimal
WITHIN = 2.0


@pytest.fixture(params=["sqlite", "postgres"])
def server(request, tmp_path):
    if request.param == "postgres":
        skip_unless_postgres_enabled()
        with postgres_database("pcnet_prop") as dsn:
            app = AppServer(tmp_path, database=postgres_url(dsn))
            app.engine = "postgres"
            try:
                yield app.start()
            finally:
                app.stop()
    else:
        app = AppServer(tmp_path)
        app.engine = "sqlite"
        try:
            yield app.start()
        finally:
            app.stop()


def charge(app, printer="lab"):
    reply = app.api("POST", "/jobs/import", {"username": "alice", "printer": printer, "pages": 1})
    return D(reply["decision"]["cost"])


def until_charged(app, price, printer="lab") -> float:
    """Seconds until a job is charged `price` (bounded: fails after 10 s)."""
    start = time.monotonic()
    while time.monotonic() - start < 10:
        if charge(app, printer) == D(price):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"still not charged {price} after 10 s\n{app.log_tail()}")


def test_a_price_imported_by_the_pcnet_command_is_charged_by_the_running_server(server, tmp_path):
    app = server
    app.api("POST", "/users", {"username": "alice", "initial_balance": "100.00", "restricted": False})
    app.api("POST", "/printers", {"name": "lab", "cost_model": {"grey": "0.10", "colour": "0.10"}})
    assert charge(app) == D("0.1000")      # cached now
    csv = tmp_path / "printers.csv"
    csv.write_text("name,grey,colour\nlab,0.30,0.30\nnew-printer,0.05,0.05\n")
    done = app.pcnet("import-printers", str(csv))
    assert done.returncode == 0, done.stderr
    assert until_charged(app, "0.3000") <= WITHIN
    # A printer the command created is there for the server at once too.
    assert charge(app, "new-printer") == D("0.0500")
    status, report = app.health()
    assert status == 200 and report["changes"]["connected"] is True
    assert report["changes"]["watching"] == ("listen" if app.engine == "postgres" else "poll")


def test_a_user_imported_by_the_pcnet_command_is_known_to_the_running_server_at_once(server, tmp_path):
    app = server
    app.api("POST", "/printers", {"name": "lab", "cost_model": {"grey": "0.10"}})
    # The server has looked "bob" up and cached that he does not exist... (an unknown user is
    # denied)
    denied = app.api("POST", "/jobs/import", {"username": "bob", "printer": "lab", "pages": 1})
    assert denied["decision"]["action"] == "deny"
    csv = tmp_path / "users.csv"
    csv.write_text("username,initial_balance,restricted\nbob,5.00,false\n")
    done = app.pcnet("import-users", str(csv))
    assert done.returncode == 0, done.stderr
    start = time.monotonic()
    while True:
        reply = app.api("POST", "/jobs/import", {"username": "bob", "printer": "lab", "pages": 1})
        if reply["decision"]["action"] == "print":
            break
        assert time.monotonic() - start < 10, app.log_tail()
        time.sleep(0.05)
    assert time.monotonic() - start <= WITHIN
