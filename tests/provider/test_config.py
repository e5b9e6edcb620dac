"""The provider's configuration and how `make_provider_service` assembles the role."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock

from pcnet.errors import ConfigError
from pcnet.net import tls
from pcnet.provider.config import PROVIDER_SCHEMA, example, load_settings
from pcnet.provider.service import ProviderService, load_credential, make_provider_service
from pcnet.spool import Limits

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path, text="", *, ca=True):
    if ca:
        ca_pem, _ = tls.create_ca("test CA")
        (tmp_path / "ca.pem").write_bytes(ca_pem)
    path = tmp_path / "provider.toml"
    path.write_text(f"""\
[provider]
name = "print01"
socket = "{tmp_path / 'run' / 'provider.sock'}"
spool_dir = "{tmp_path / 'spool'}"
{text}
[server]
host = "pcnet.test"
""")
    return path


def test_the_example_file_documents_every_key():
    assert (REPO / "etc" / "provider.toml").read_text() == example()
    text = example()
    for section, keys in PROVIDER_SCHEMA.items():
        assert f"[{section}]" in text
        for name, key in keys.items():
            assert f"\n# {key.help}\n{name} = " in text


def test_paths_are_relative_to_the_data_dir_and_the_endpoint_defaults_to_port_9191(tmp_path):
    s = load_settings(write_config(tmp_path))
    assert s.node == "print01"
    assert s.journal_dir == tmp_path / "journal"
    assert s.ca_cert == tmp_path / "ca.pem"
    assert s.server_endpoint == "tcp:host=pcnet.test:port=9191"
    assert s.decision_timeout == 10.0


@pytest.mark.parametrize("extra, message", [
    ("decision_timeout_typo = 3", "unknown key 'decision_timeout_typo'"),
    ('default_failure_mode = "pray"', "default_failure_mode"),
    ("analysis_threads = 0", "analysis_threads"),
])
def test_a_wrong_key_names_the_file_and_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_settings(write_config(tmp_path, extra))
    assert str(tmp_path / "provider.toml") in e.value.message


def test_analysis_limits_and_sandbox_come_from_the_analysis_section(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + """
[analysis]
sandbox = "user"
timeout = 30
cpu_seconds = 20
memory_limit_mb = 256
max_pages = 5000
max_copies = 999
work_dir = "analysis"
""")
    limits = load_settings(path).analysis
    assert (limits.sandbox, limits.timeout, limits.cpu_seconds, limits.memory_mb) == (
        "user", 30.0, 20, 256)
    assert (limits.max_pages, limits.max_copies) == (5000, 999)
    assert limits.work_dir == str(tmp_path / "analysis")
    assert load_settings(write_config(tmp_path)).analysis == Limits()


@pytest.mark.parametrize("text, key", [
    ('sandbox = "chroot"', "sandbox"),
    ("max_pages = 0", "max_pages"),
    ("memory_limit_mb = -1", "memory_limit_mb"),
])
def test_a_wrong_analysis_key_is_named(tmp_path, text, key):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + f"\n[analysis]\n{text}\n")
    with pytest.raises(ConfigError, match=key):
        load_settings(path)


def test_a_sandbox_that_cannot_run_stops_start_up(tmp_path, monkeypatch):
    from pcnet.spool import _sandbox

    monkeypatch.setattr(_sandbox, "bwrap_problem", lambda: "user namespaces are disabled")
    path = write_config(tmp_path)
    path.write_text(path.read_text() + '\n[analysis]\nsandbox = "bwrap"\n')
    with pytest.raises(ConfigError, match="user namespaces are disabled"):
        make_provider_service(path, MemoryReactorClock())


def test_a_tls_endpoint_in_the_config_is_refused(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + 'endpoint = "ssl:host=x:port=1"\n')
    with pytest.raises(ConfigError, match="endpoint"):
        load_settings(path)


def test_a_missing_ca_stops_start_up_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="ca_cert"):
        make_provider_service(write_config(tmp_path, ca=False), MemoryReactorClock())


def test_the_credential_is_created_once_private(tmp_path):
    path = tmp_path / "d" / "credential"
    first = load_credential(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) >= 40
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert load_credential(path) == first


def test_the_enrolment_code_goes_into_the_hello_and_a_bad_one_is_not_echoed(tmp_path):
    path = write_config(tmp_path)
    assert load_settings(path).enrolment_code is None
    with path.open("a") as f:
        f.write('enrolment_code = "Abc-123_xyz"\n')
    assert load_settings(path).enrolment_code == "Abc-123_xyz"
    service = make_provider_service(path, MemoryReactorClock())
    assert service.factory.enrolment_code == "Abc-123_xyz"
    path.write_text(path.read_text().replace('"Abc-123_xyz"', '" S3CRET pasted badly "'))
    with pytest.raises(ConfigError, match=r"\[server\] enrolment_code") as e:
        load_settings(path)
    assert "S3CRET" not in e.value.message


def test_the_service_listens_for_the_backend_and_connects_to_its_server(tmp_path):
    reactor = MemoryReactorClock()
    service = make_provider_service(write_config(tmp_path), reactor)
    assert isinstance(service, ProviderService) and IService.providedBy(service)
    # A stale socket from a crashed run is removed before the listener starts.
    sock_path = tmp_path / "run" / "provider.sock"
    sock_path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()
    service.privilegedStartService()
    service.startService()
    try:
        assert not sock_path.exists()  # the MemoryReactor does not create the file
        (unix_port,) = reactor.unixServers
        assert unix_port[0] == str(sock_path) and unix_port[3] == 0o660
        (tcp,) = reactor.tcpClients
        assert (tcp[0], tcp[1]) == ("pcnet.test", 9191)
    finally:
        service.stopService()


def _with_server_keys(tmp_path, keys: str):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + keys + "\n")
    return path


def test_a_list_of_servers_is_tried_in_order_each_verified_by_its_own_host_name(tmp_path):
    s = load_settings(_with_server_keys(
        tmp_path, 'servers = ["app1.example.org", "app2.example.org:9192", "[fd00::7]:9191",'
                  ' "tcp:host=10.0.0.9:port=9191"]\nfailback_interval = 0'))
    assert [(a.endpoint, a.host) for a in s.servers] == [
        ("tcp:host=app1.example.org:port=9191", "app1.example.org"),
        ("tcp:host=app2.example.org:port=9192", "app2.example.org"),
        ("tcp:host=fd00\\:\\:7:port=9191", "fd00::7"),
        ("tcp:host=10.0.0.9:port=9191", "pcnet.test"),    # an endpoint: [server] host's name
    ]
    assert s.failback_interval == 0 and s.rejected_retry == 300


def test_without_a_list_the_one_server_of_host_and_endpoint_is_used(tmp_path):
    s = load_settings(write_config(tmp_path))
    assert [(a.endpoint, a.host) for a in s.servers] == [("tcp:host=pcnet.test:port=9191", "pcnet.test")]


@pytest.mark.parametrize("value, message", [
    ('["tls:host=a:port=1"]', "TLS is added by pcnet"),
    ('["app:http"]', "the port must be a number"),
    ('[""]', "is not a server"),
    ('[7]', "is not a server"),
])
def test_a_bad_server_in_the_list_is_named(tmp_path, value, message):
    with pytest.raises(ConfigError, match=r"\[server\] servers") as e:
        load_settings(_with_server_keys(tmp_path, f"servers = {value}"))
    assert message in str(e.value)


def test_the_provider_service_keeps_one_session_over_the_server_list(tmp_path):
    from pcnet.net.failover import ServerList

    path = _with_server_keys(tmp_path, 'servers = ["a.example.org", "b.example.org:9999"]')
    service = make_provider_service(path, MemoryReactorClock())
    link = service.getServiceNamed("link")
    assert isinstance(link, ServerList)
    assert [srv.name for srv in link.servers] == [
        "a.example.org (tcp:host=a.example.org:port=9191)",
        "b.example.org (tcp:host=b.example.org:port=9999)"]
