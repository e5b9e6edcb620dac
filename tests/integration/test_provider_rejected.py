"""A real Print Provider process whose hello the server rejects (a name nobody invited, no
enrolment code) logs one clear line per round and retries after `[server] rejected_retry`, and
never a traceback: before, Twisted's ClientService raised automat's NoTransition (a critical
traceback) on every retry, for ever."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from pcnet_deploy import AppServer, ProviderProcess

pytestmark = pytest.mark.integration


def test_a_rejected_provider_says_so_in_one_line_and_waits_without_tracebacks(tmp_path):
    app = AppServer(tmp_path, auto_approve_networks=()).start()
    # No cupsd is needed: a provider without a session never asks CUPS anything.
    rig = SimpleNamespace(provider_socket=tmp_path / "provider.sock",
                          pcnet_spool_dir=tmp_path / "spool", server=str(tmp_path / "no-cups.sock"))
    provider = ProviderProcess(tmp_path, app, rig, node="uninvited", servers=[app, app])
    text = provider.config.read_text().replace("[server]\n", "[server]\nrejected_retry = 2\n", 1)
    provider.config.write_text(text)
    try:
        provider.start()
        deadline = time.monotonic() + 30
        while provider.log_text().count("every server rejected this node") < 2:
            assert time.monotonic() < deadline, provider.log_tail()
            time.sleep(0.2)
        log = provider.log_text()
        assert "NoTransition" not in log and "Traceback" not in log and "#critical]" not in log
        # One line per server and reason, not one per attempt.
        assert log.count("rejected: ") == 2 and log.count("may not connect") == 2, log
        assert "pcnet nodes invite NAME" in log
    finally:
        provider.stop()
        app.stop()
