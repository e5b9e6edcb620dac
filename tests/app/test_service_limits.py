"""How the Application Server wires its bounds from the configuration: one set of connection
caps for both listeners, one sign-in throttle for every password check, the pcnet/1 hello
limits, and a listen backlog that a flood of new connections does not overflow."""

from twisted.internet import task

from pcnet import config as configlib
from pcnet.app.service import ApplicationServer, with_backlog

CONFIG = """
[server]
max_connections = 500
max_connections_per_address = 7
handshake_timeout = 4
[protocol]
hello_line_length = 2048
auth_timeout = 6
[signin]
hashes_per_second = 3
concurrent_hashes = 1
user_failures = 2
"""


def server():
    cfg = configlib.parse(CONFIG)
    return ApplicationServer(cfg, task.Clock(), None, tls_options=None)


def test_the_configured_caps_and_throttle_are_built_once_for_the_server():
    app = server()
    assert (app.connection_limits.max_total, app.connection_limits.max_per_source) == (500, 7)
    p = app.signin.policy
    assert (p.hashes_per_second, p.concurrent_hashes, p.user_failures) == (3, 1, 2)
    line = app.line_factory()
    assert (line.config.hello_line_length, line.config.auth_timeout) == (2048, 6)
    assert line.stranger_work is app.stranger_work   # one queue for handshakes and closes


def test_the_admin_api_checks_passwords_through_the_servers_throttle():
    app = server()
    app.web_root()
    assert app.admin_api.signin is app.signin


def test_tcp_listeners_get_a_large_backlog_unless_they_set_one():
    assert with_backlog("tcp:9191", 1024) == "tcp:9191:backlog=1024"
    assert with_backlog("tcp:9191:interface=127.0.0.1", 64) == "tcp:9191:interface=127.0.0.1:backlog=64"
    assert with_backlog("tcp:9191:backlog=10", 1024) == "tcp:9191:backlog=10"
    assert with_backlog("tcp6:port=9191", 8) == "tcp6:port=9191:backlog=8"
    assert with_backlog("unix:/run/pcnet.sock", 1024) == "unix:/run/pcnet.sock"


def test_start_up_objects_are_frozen_out_of_the_garbage_collectors_full_scans():
    """With thousands of connections open, full collections that rescan every start-up object
    paused the reactor for a quarter of a second; frozen, they are skipped."""
    import gc

    from pcnet.app.service import _settle_garbage_collector

    before = gc.get_threshold()
    try:
        _settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (10_000, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
