"""Test helpers for pcnet.net: a PKI minted at test time, in-memory connections, Deferred results.

Everything here runs without sockets or a reactor: `iosim` moves bytes between two protocols,
`task.Clock` is the time, and TLS is real (both ends wrapped in `TLSMemoryBIOFactory`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim

from pcnet.net import tls
from pcnet.net.line import LineClientFactory, LineConfig, LineServerFactory, Operations
from pcnet.net.registry import MemoryNodeRegistry

SERVER_ADDR = IPv4Address("TCP", "10.0.0.1", 9191)
NODE_ADDR = IPv4Address("TCP", "10.1.2.3", 40000)
CREDENTIAL = "s3cret-credential-for-tests-0123456789abcdef"


@dataclass
class PKI:
    ca_pem: bytes
    ca_key_pem: bytes
    server_pem: bytes
    server_key_pem: bytes
    client_pem: bytes
    client_key_pem: bytes
    other_ca_pem: bytes
    other_server_pem: bytes
    other_server_key_pem: bytes


def make_pki() -> PKI:
    ca, ca_key = tls.create_ca("pcnet test CA")
    server, server_key = tls.issue_certificate(
        ca, ca_key, ["pcnet.test", "localhost", "127.0.0.1", "::1"]
    )
    client, client_key = tls.issue_certificate(ca, ca_key, ["print01"], client=True)
    other_ca, other_ca_key = tls.create_ca("someone else's CA")
    other_server, other_server_key = tls.issue_certificate(
        other_ca, other_ca_key, ["pcnet.test", "localhost", "127.0.0.1"]
    )
    return PKI(
        ca, ca_key, server, server_key, client, client_key, other_ca, other_server,
        other_server_key,
    )


# --- Deferred results without a reactor --------------------------------------------------------


def result_of(d: Deferred):
    """The result of a Deferred that has already succeeded."""
    box: list = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def failure_of(d: Deferred, *types) -> Failure:
    """The Failure of a Deferred that has already failed (with one of `types`)."""
    box: list = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    assert isinstance(box[0], Failure), f"the Deferred succeeded with {box[0]!r}"
    if types:
        assert box[0].check(*types), f"unexpected failure {box[0].value!r}"
    return box[0]


def has_fired(d: Deferred) -> bool:
    return d.called


def one_turn(clock: task.Clock, amount: float = 0) -> None:
    """Move the clock on and run the calls due then once, as one reactor turn would:
    task.Clock.advance would also run what they schedule for now, i.e. every later turn."""
    clock.rightNow += amount
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in sorted(due, key=lambda c: c.getTime()):
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


# --- in-memory connections ----------------------------------------------------------------------


def connect_in_memory(
    server_protocol,
    client_protocol,
    clock: task.Clock,
    *,
    server_addr=SERVER_ADDR,
    client_addr=NODE_ADDR,
) -> iosim.IOPump:
    """Connect two protocols through iosim (addresses set as a server would see them)."""
    server_transport = iosim.FakeTransport(
        server_protocol, isServer=True, hostAddress=server_addr, peerAddress=client_addr
    )
    client_transport = iosim.FakeTransport(
        client_protocol, isServer=False, hostAddress=client_addr, peerAddress=server_addr
    )
    return iosim.connect(
        server_protocol, server_transport, client_protocol, client_transport, clock=clock
    )


def tls_client(factory, options, clock):
    """A client-side protocol wrapped in TLS; its application protocol is `.wrappedProtocol`."""
    return TLSMemoryBIOFactory(options, True, factory, clock=clock).buildProtocol(SERVER_ADDR)


def tls_server(factory, options, clock):
    return TLSMemoryBIOFactory(options, False, factory, clock=clock).buildProtocol(NODE_ADDR)


class Recorder(Factory):
    """A factory whose protocols record what they receive (and the negotiated ALPN)."""

    def __init__(self, name: str = "recorder"):
        self.name = name
        self.instances: list = []

    def buildProtocol(self, addr):
        from twisted.internet.protocol import Protocol

        factory = self

        class Recording(Protocol):
            def __init__(self):
                self.received = b""
                self.lost = None

            def connectionMade(self):
                factory.instances.append(self)

            def dataReceived(self, data):
                self.received += data

            def connectionLost(self, reason):
                self.lost = reason

        return Recording()


# --- a server-side pcnet/1 protocol on a StringTransport -----------------------------------------


class ServerHarness:
    """The server end of pcnet/1 on a `StringTransport`, fed raw lines, replies parsed back."""

    def __init__(
        self,
        ops: Operations | None = None,
        registry: MemoryNodeRegistry | None = None,
        config: LineConfig | None = None,
        peer=NODE_ADDR,
    ):
        self.clock = task.Clock()
        self.ops = ops if ops is not None else Operations()
        if registry is None:
            registry = MemoryNodeRegistry()
            registry.add("provider", "print01", CREDENTIAL)
        self.registry = registry
        self.factory = LineServerFactory(
            self.ops, self.registry, clock=self.clock, config=config, server_name="app1"
        )
        self.transport = StringTransport(peerAddress=peer, hostAddress=SERVER_ADDR)
        self.protocol = self.factory.buildProtocol(peer)
        self.protocol.makeConnection(self.transport)

    def send(self, message) -> None:
        if isinstance(message, (dict, list)):
            message = json.dumps(message).encode() + b"\n"
        self.protocol.dataReceived(message)

    def replies(self) -> list[dict]:
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.split(b"\n") if line]

    def hello(self, node="print01", credential=CREDENTIAL, role="provider", id=1, **extra) -> dict:
        self.send(
            {"op": "hello", "id": id, "version": 1, "role": role, "node": node,
             "credential": credential, **extra}
        )
        (reply,) = self.replies()
        return reply

    def lose(self, reason=None) -> None:
        from twisted.internet.error import ConnectionLost

        self.protocol.connectionLost(Failure(reason or ConnectionLost("gone")))


def line_pair(
    ops_server: Operations | None = None,
    ops_client: Operations | None = None,
    *,
    registry: MemoryNodeRegistry | None = None,
    config: LineConfig | None = None,
    clock: task.Clock | None = None,
    enrolment_code: str | None = None,
):
    """A pcnet/1 server and client connected in memory without TLS (require_tls=False).

    Returns (server_factory, client_factory, server_protocol, client_protocol, pump, clock).
    """
    clock = clock or task.Clock()
    if registry is None:
        registry = MemoryNodeRegistry()
        registry.add("provider", "print01", CREDENTIAL)
    server_factory = LineServerFactory(
        ops_server or Operations(), registry, clock=clock, config=config, server_name="app1"
    )
    client_factory = LineClientFactory(
        role="provider", node="print01", credential=CREDENTIAL, clock=clock,
        ops=ops_client, config=config, require_tls=False, enrolment_code=enrolment_code,
    )
    server = server_factory.buildProtocol(NODE_ADDR)
    client = client_factory.buildProtocol(SERVER_ADDR)
    pump = connect_in_memory(server, client, clock)
    return server_factory, client_factory, server, client, pump, clock
