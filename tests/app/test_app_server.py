"""The Application Server as an administrator starts it: `pcnet init`, then `twistd pcnet app`.

These run the real commands in subprocesses on loopback ports, against the embedded SQLite
database, and talk to the server over real sockets with treq.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
import treq

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pcnet(*args, check=True):
    return subprocess.run([str(BIN / "pcnet"), *args], capture_output=True, text=True, env=ENV,
                          timeout=120, check=check)


def twistd_app(config, **kw):
    return subprocess.Popen([str(BIN / "twistd"), "--nodaemon", "--pidfile=", "pcnet", "app",
                             "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV, **kw)


@pytest.fixture
def initialised(tmp_path):
    http, tls = free_port(), free_port()
    out = pcnet("init", "--data-dir", str(tmp_path / "data"), "--http", f"tcp:{http}:interface=127.0.0.1",
                "--tls", f"tcp:{tls}:interface=127.0.0.1").stdout
    token = re.search(r"API token:\s+(\S+)", out).group(1)
    password = re.search(r"password:\s+(\S+)", out).group(1)
    return {"config": tmp_path / "data" / "pcnet.toml", "http": http, "tls": tls, "token": token,
            "password": password, "data": tmp_path / "data"}


def test_init_writes_config_ca_and_database_and_prints_secrets_once(initialised):
    data = initialised["data"]
    assert (data / "pcnet.toml").exists()
    assert (data / "pcnet.db").exists()
    assert (data / "tls" / "ca.pem").exists()
    assert oct((data / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"
    # The secrets are printed, never stored in clear.
    for f in data.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert initialised["token"].encode() not in blob
            assert initialised["password"].encode() not in blob


def test_init_twice_refuses_and_if_missing_succeeds(initialised):
    again = pcnet("init", "--data-dir", str(initialised["data"]), check=False)
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    assert pcnet("init", "--data-dir", str(initialised["data"]), "--if-missing").returncode == 0


@pytest.mark.parametrize("config_text, message", [
    (None, "configuration file not found"),
    ("[server]\nport = 1\n", "[server] unknown key 'port'"),
    ("[database]\nurl = 'postgresql://postgres@127.0.0.1:1/nowhere'\n", "cannot reach PostgreSQL at 127.0.0.1:1/nowhere"),
])
def test_start_up_errors_are_one_line_and_exit_1(tmp_path, config_text, message):
    config = tmp_path / "pcnet.toml"
    if config_text is not None:
        config.write_text(config_text)
        # TLS files must exist for the database check to be reached.
        from pcnet.net.tls import TLSFiles

        TLSFiles(tmp_path / "tls").ensure(["localhost"])
    proc = twistd_app(config)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert message in out
    assert "Traceback" not in out
    assert len([line for line in out.splitlines() if line.strip()]) == 1, out


def _wait_listening(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("server did not start listening")


@pytest.fixture
def running(initialised):
    proc = twistd_app(initialised["config"])
    try:
        _wait_listening(initialised["http"], proc)
        yield initialised
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest_twisted.ensureDeferred
async def test_first_session_create_user_printer_import_job_see_balance_and_ledger(running):
    """The issue's 'done when': with the printed token, create a user and a printer with a
    colour/duplex cost model, charge an imported job, and see the balance and the ledger row."""
    api = f"http://127.0.0.1:{running['http']}/api/v1"
    headers = {"Authorization": f"Bearer {running['token']}"}

    async def call(method, path, body=None):
        response = await treq.request(method, api + path, headers=headers,
                                      data=json.dumps(body).encode() if body is not None else None)
        return response.code, await response.json()

    code, user = await call("POST", "/users", {"username": "alice", "initial_balance": "10.00"})
    assert code == 201, user
    code, printer = await call("POST", "/printers", {
        "name": "library-colour",
        "cost_model": {"grey": "0.10", "colour": "0.50", "duplex_discount": "0.02"}})
    assert code == 201, printer
    code, result = await call("POST", "/jobs/import", {
        "username": "alice", "printer": "library-colour", "pages": 4, "colour_pages": 1,
        "duplex": True, "document_name": "essay.pdf"})
    assert code in (200, 201), result
    # 3 grey sides at 0.08 + 1 colour side at 0.48
    assert result["decision"]["action"] == "print"
    assert result["decision"]["cost"] == "0.7200"
    account_id = user["personal_account_id"]
    code, account = await call("GET", f"/accounts/{account_id}")
    assert account["balance"] == "9.2800"
    code, history = await call("GET", f"/accounts/{account_id}/transactions")
    charges = [t for t in history["items"] if t["kind"] == "charge"]
    assert len(charges) == 1
    assert charges[0]["amount"] == "-0.7200" and charges[0]["balance_after"] == "9.2800"


@pytest_twisted.ensureDeferred
async def test_api_refuses_requests_without_the_token(running):
    response = await treq.get(f"http://127.0.0.1:{running['http']}/api/v1/users")
    assert response.code == 401
    body = await response.json()
    assert body["error"]["code"] == "unauthorized"


@pytest_twisted.ensureDeferred
async def test_tls_port_serves_https_verified_against_the_deployment_ca(running):
    from twisted.internet import reactor
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
    from twisted.internet.ssl import Certificate

    ca = Certificate.loadPEM((running["data"] / "tls" / "ca.pem").read_bytes())
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=ca))
    client = treq.client.HTTPClient(agent)
    for port in (running["tls"], running["http"]):
        response = await client.get(f"https://localhost:{port}/api/v1/openapi.json")
        assert response.code == 200
        doc = await response.json()
        assert doc["openapi"].startswith("3.")


def test_the_job_limits_and_the_offline_policy_reach_the_job_service():
    """`[jobs]` max_copies, max_pages, max_total_pages and offline_policy configure the one
    job service that every path into the ledger (and the provider operations) uses."""
    from twisted.internet.task import Clock

    from pcnet import config
    from pcnet.app.service import ApplicationServer
    from pcnet.domain.model import JobLimits, OfflinePolicy

    cfg = config.parse("[jobs]\nmax_copies = 5\nmax_pages = 50\nmax_total_pages = 200\n"
                       "offline_policy = 'charge-at-limits'\n")
    app = ApplicationServer(cfg, Clock(), object(), tls_options=None)
    assert app.jobs.limits == JobLimits(max_copies=5, max_pages=50, max_total_pages=200)
    assert app.jobs.offline_policy is OfflinePolicy.CHARGE_AT_LIMITS
    assert app.provider_ops.services.jobs is app.jobs


def test_a_port_that_cannot_be_opened_is_one_line_naming_the_file_and_key(initialised):
    """The store has started (migrations applied) when the listeners start: a port that is
    taken stops the server with one critical line naming the file, `[server] http` and the
    endpoint, never a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", initialised["http"]))
        taken.listen(1)
        proc = twistd_app(initialised["config"])
        out, _ = proc.communicate(timeout=60)
    lines = [line for line in out.splitlines() if "cannot start" in line]
    assert len(lines) == 1, out
    assert f"{initialised['config']}: [server] http: cannot listen on tcp:{initialised['http']}" in lines[0]
    assert "Traceback" not in out
