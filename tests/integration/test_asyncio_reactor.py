"""`twistd --reactor=asyncio pcnet app` starts and serves: the way to run the Application
Server on Twisted's asyncio reactor, where SNMPv3 polling uses the reactor's own loop instead of
a loop thread (pcnet/devices/_asyncio.py). The server's default remains the default reactor."""

import subprocess

import pytest

from pcnet_deploy import TWISTD, AppServer, _env, _port_open, _stop, wait_until

pytestmark = pytest.mark.integration


def test_the_application_server_runs_on_the_asyncio_reactor(tmp_path):
    app = AppServer(tmp_path)
    with open(tmp_path / "asyncio.log", "wb") as log:
        process = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "--reactor=asyncio", "pcnet", "app",
             "--config", str(app.config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_env(),
            cwd=tmp_path, start_new_session=True)
        try:
            wait_until(lambda: process.poll() is None and _port_open(app.http_port)
                       and _port_open(app.tls_port), 60, "the server to listen")
            users = app.api("GET", "/users")
            assert [u["username"] for u in users["items"]] == ["admin"]
        finally:
            _stop(process)
    text = (tmp_path / "asyncio.log").read_text(errors="replace")
    assert "AsyncioSelectorReactor" in text and "Traceback" not in text
