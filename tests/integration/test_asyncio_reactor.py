"""`twistd --reactor=asyncio pcnet app` starts and serves: the way to run the Application
Server on Twisted's asyncio reactor, where SNMPv3 polling uses the reactor's own loop instead of
a loop thread (pcnet/devices/_asyncio.py). The server's default remains the default reactor."""

import pytest

from pcnet_deploy import TWISTD, AppServer, _port_open, _process, wait_until

pytestmark = pytest.mark.integration


def test_the_application_server_runs_on_the_asyncio_reactor(tmp_path):
    app = AppServer(tmp_path)
    process = _process("app-asyncio", [TWISTD, "--nodaemon", "--pidfile=", "--reactor=asyncio",
                                       "pcnet", "app", "--config", str(app.config)],
                       tmp_path / "asyncio.log", tmp_path, None)
    process.start()
    try:
        wait_until(lambda: process.alive and _port_open(app.http_port)
                   and _port_open(app.tls_port), 60, "the server to listen")
        users = app.api("GET", "/users")
        assert [u["username"] for u in users["items"]] == ["admin"]
    finally:
        process.stop()
    text = (tmp_path / "asyncio.log").read_text(errors="replace")
    assert "AsyncioSelectorReactor" in text and "Traceback" not in text
