"""The `device` role of pcnet/1: a scripted embedded app, connected in memory (iosim) to a
server whose operations are the `DeviceOps` adapter over the fake core, signs a user in, reads
the balance and held jobs, releases, records usage, and is refused what it may not do."""

import pytest
from twisted.internet import task

from pcnet.devices import DeviceConfig
from pcnet.devices.protocol import MAX_SESSIONS, DeviceOps
from pcnet.devices.testing import FakeCore
from pcnet.errors import NotFound
from pcnet.net.line import LineClientFactory, LineServerFactory, Operations, RemoteError
from pcnet.net.registry import MemoryNodeRegistry
from pcnet.net import tls
from tests.net._support import (
    NODE_ADDR,
    SERVER_ADDR,
    connect_in_memory,
    failure_of,
    make_pki,
    result_of,
    tls_client,
    tls_server,
)

PRINTER = 5
CREDENTIAL = "device-credential-0123456789abcdef"


class Scripted:
    """An embedded app on 'mfd-lobby' (role device) talking to a server with DeviceOps."""

    def __init__(self, role="device", node="mfd-lobby", pki=None):
        self.clock = task.Clock()
        self.core = FakeCore(self.clock)
        self.config = DeviceConfig("mfd-lobby", "embedded", printer_id=PRINTER)
        services = {"mfd-lobby": self.core.services_for(self.config)}

        def services_for(name):
            try:
                return services[name]
            except KeyError:
                raise NotFound(f"no device {name!r}") from None

        ops = DeviceOps(services_for).register(Operations())
        registry = MemoryNodeRegistry()
        registry.add(role, node, CREDENTIAL)
        server_factory = LineServerFactory(ops, registry, clock=self.clock, server_name="app1")
        client_factory = LineClientFactory(role=role, node=node, credential=CREDENTIAL,
                                           clock=self.clock, require_tls=pki is not None)
        if pki is None:
            self.server = server_factory.buildProtocol(NODE_ADDR)
            self.client = client_factory.buildProtocol(SERVER_ADDR)
            self.pump = connect_in_memory(self.server, self.client, self.clock)
        else:
            server = tls_server(server_factory, tls.server_tls_options(
                pki.server_pem, pki.server_key_pem), self.clock)
            client = tls_client(client_factory, tls.client_tls_options("pcnet.test", pki.ca_pem),
                                self.clock)
            self.pump = connect_in_memory(server, client, self.clock)
            self.client = client.wrappedProtocol
        d = self.client.hello()
        self.pump.flush()
        result_of(d)

    def call(self, op, **fields):
        d = self.client.request(op, **fields)
        self.pump.flush()
        return d

    def ok(self, op, **fields):
        return result_of(self.call(op, **fields))

    def error(self, op, **fields) -> RemoteError:
        return failure_of(self.call(op, **fields), RemoteError).value


def test_card_sign_in_gives_a_session_the_accounts_and_the_balance():
    s = Scripted()
    s.core.add_user("alice", card="A1", balance="3.50")
    reply = s.ok("device.sign_in", method="card", card="A1")
    assert reply["user"] == {"username": "alice", "full_name": "Alice"}
    assert reply["accounts"][0]["balance"] == "3.5000" and reply["accounts"][0]["kind"] == "personal"
    assert len(reply["session"]) >= 24
    assert s.ok("device.accounts", session=reply["session"])["accounts"] == reply["accounts"]


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_a_device_over_tls_with_alpn_pcnet_signs_in_and_releases():
    """The same conversation over real TLS (in memory), as a device on the network has it."""
    s = Scripted(pki=make_pki())
    zoe = s.core.add_user("zoe", card="Z1")
    job = s.core.hold_job(zoe, printer_id=PRINTER)
    token = s.ok("device.sign_in", method="card", card="Z1")["session"]
    assert s.ok("device.release", session=token, job=job)["job"]["status"] == "released"


def test_wrong_secrets_and_unknown_cards_get_stable_error_codes():
    s = Scripted()
    s.core.add_user("bob", card="B2", pin="1111", password="correct-horse")
    assert s.error("device.sign_in", method="card", card="ZZ").code == "unknown_card"
    assert s.error("device.sign_in", method="card_pin", card="B2", pin="0000").code == "authentication_failed"
    assert s.error("device.sign_in", method="password", username="bob", password="x").code == "authentication_failed"
    assert s.ok("device.sign_in", method="card_pin", card="B2", pin="1111")["session"]
    assert s.ok("device.sign_in", method="password", username="bob", password="correct-horse")["session"]


def test_held_jobs_are_listed_and_released_for_the_signed_in_user_only():
    s = Scripted()
    carol = s.core.add_user("carol", card="C3")
    dave = s.core.add_user("dave", card="D4")
    mine = s.core.hold_job(carol, printer_id=PRINTER, document_name="report.pdf")
    theirs = s.core.hold_job(dave, printer_id=PRINTER)
    token = s.ok("device.sign_in", method="card", card="C3")["session"]
    jobs = s.ok("device.held_jobs", session=token)["jobs"]
    assert [j["uuid"] for j in jobs] == [mine] and jobs[0]["document_name"] == "report.pdf"
    assert s.ok("device.release", session=token, job=mine)["job"]["status"] == "released"
    assert s.error("device.release", session=token, job=theirs).code == "not_found"
    assert s.core.jobs[theirs].status == "held"
    assert s.error("device.release", session=token, job=mine).code == "conflict"


def test_usage_is_recorded_once_per_uuid_and_charged():
    s = Scripted()
    erin = s.core.add_user("erin", card="E5", balance="10.00")
    token = s.ok("device.sign_in", method="card", card="E5")["session"]
    fields = dict(session=token, uuid="mfd-lobby-job-17", kind="copy", pages=10, colour_pages=2,
                  duplex=False, paper_size="A4")
    assert s.ok("device.quote", **fields)["cost"] == "1.8000"
    first = s.ok("device.usage", **fields)
    assert (first["cost"], first["balance_after"], first["repeated"]) == ("1.8000", "8.2000", False)
    again = s.ok("device.usage", **fields)
    assert again["repeated"] is True and str(s.core.account_of(erin).balance) == "8.2000"


def test_a_session_token_is_needed_and_ends_with_sign_out():
    s = Scripted()
    s.core.add_user("fay", card="F6")
    token = s.ok("device.sign_in", method="card", card="F6")["session"]
    assert s.error("device.held_jobs", session="made-up").code == "session_unknown"
    s.ok("device.sign_out", session=token)
    assert s.error("device.held_jobs", session=token).code == "session_unknown"


def test_old_sessions_are_closed_past_the_per_connection_limit():
    s = Scripted()
    s.core.add_user("gus", card="G7")
    tokens = [s.ok("device.sign_in", method="card", card="G7")["session"] for _ in range(MAX_SESSIONS + 1)]
    assert s.error("device.accounts", session=tokens[0]).code == "session_unknown"
    assert s.ok("device.accounts", session=tokens[-1])


@pytest.mark.parametrize("op,fields,field", [
    ("device.sign_in", {"method": "retina"}, "method"),
    ("device.sign_in", {"method": "card", "card": "x" * 65}, "card"),
    ("device.sign_in", {"method": "card", "card": "\u0000"}, "card"),
    ("device.sign_in", {"method": "card", "card": 1234}, "card"),
    ("device.usage", {"kind": "copy", "pages": -1, "uuid": "u-000000001"}, "pages"),
    ("device.usage", {"kind": "print", "pages": 1, "uuid": "u-000000001"}, "kind"),
    ("device.usage", {"kind": "copy", "pages": 1, "uuid": "short"}, "uuid"),
    ("device.usage", {"kind": "copy", "pages": 2, "colour_pages": 3, "uuid": "u-000000001"}, "colour_pages"),
    ("device.status", {"state": "on fire"}, "state"),
])
def test_bad_fields_are_invalid_replies_naming_the_field(op, fields, field):
    s = Scripted()
    s.core.add_user("hal", card="H8")
    token = s.ok("device.sign_in", method="card", card="H8")["session"]
    if op != "device.sign_in":
        fields = {"session": token, **fields}
    e = s.error(op, **fields)
    assert e.code == "invalid" and field in e.message


def test_status_reports_reach_the_core():
    s = Scripted()
    s.ok("device.status", state="warning", detail="toner low")
    (status,) = s.core.reports["mfd-lobby"].statuses
    assert (status.state.value, status.detail) == ("warning", "toner low")


def test_a_provider_may_not_call_device_operations():
    s = Scripted(role="provider", node="mfd-lobby")
    assert s.error("device.sign_in", method="card", card="A1").code == "forbidden"
