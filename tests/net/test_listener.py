"""The multiplexing listener, in memory with real TLS: first byte, then ALPN, pick the protocol."""

import pytest
from twisted.internet import task
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions
from twisted.web.resource import Resource
from twisted.web.server import Site

from pcnet.net import tls
from pcnet.net.line import LineClientFactory, LineServerFactory, LinkDown, Operations
from pcnet.net.listener import MultiplexingFactory
from pcnet.net.registry import MemoryNodeRegistry

from ._support import (
    CREDENTIAL,
    NODE_ADDR,
    Recorder,
    connect_in_memory,
    failure_of,
    one_turn,
    result_of,
    tls_client,
    tls_server,
)

pytestmark = pytest.mark.filterwarnings("error:Passing pyOpenSSL:DeprecationWarning")

GET = b"GET /hello HTTP/1.1\r\nHost: pcnet.test\r\nConnection: close\r\n\r\n"


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello over " + (b"https" if request.isSecure() else b"http")


class Server:
    """A multiplexing listener with a web site and pcnet/1 behind it, on a task.Clock."""

    def __init__(self, pki, *, allow_plain=True):
        self.clock = task.Clock()
        self.registry = MemoryNodeRegistry()
        self.registry.add("provider", "print01", CREDENTIAL)
        ops = Operations()
        ops.register("whoami", lambda session, message: {
            "node": session.node,
            "alpn": session.transport.negotiatedProtocol.decode(),
        })
        self.site = Site(Hello(), reactor=self.clock)
        self.line = LineServerFactory(ops, self.registry, clock=self.clock)
        self.mux = MultiplexingFactory(
            self.site,
            self.line,
            tls.server_tls_options(pki.server_pem, pki.server_key_pem),
            allow_plain=allow_plain,
            clock=self.clock,
        )

    def connect(self, client_protocol):
        server_protocol = self.mux.buildProtocol(NODE_ADDR)
        pump = connect_in_memory(server_protocol, client_protocol, self.clock)
        return server_protocol, pump


def plain_client():
    recorder = Recorder()
    return recorder, recorder.buildProtocol(None)


def test_plain_http_on_the_shared_port_gets_http(pki):
    server = Server(pki)
    _, client = plain_client()
    _server_protocol, pump = server.connect(client)
    client.transport.write(GET)
    pump.flush()
    assert client.received.startswith(b"HTTP/1.1 200 OK")
    assert client.received.endswith(b"hello over http")


def test_the_line_protocol_is_never_spoken_in_clear_text(pki):
    server = Server(pki)
    _, client = plain_client()
    _, pump = server.connect(client)
    client.transport.write(
        b'{"op":"hello","id":1,"version":1,"role":"provider","node":"print01",'
        b'"credential":"' + CREDENTIAL.encode() + b'"}\n'
    )
    pump.flush()
    assert client.received == b""  # HTTP is still waiting for its CRLF
    client.transport.write(b"\r\n")
    pump.flush()
    assert client.received.startswith(b"HTTP/1.1 400")  # it was HTTP all along
    assert server.line.sessions == {}


@pytest.mark.parametrize("alpn", [(b"http/1.1",), ()], ids=["http/1.1", "no-alpn"])
def test_tls_without_pcnet_alpn_gets_https(pki, alpn):
    server = Server(pki)
    app = Recorder()
    client = tls_client(app, tls.client_tls_options("pcnet.test", pki.ca_pem, alpn=alpn),
                        server.clock)
    _, pump = server.connect(client)
    app.instances[0].transport.write(GET)
    pump.flush()
    received = app.instances[0].received
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.endswith(b"hello over https")


def node_factory(clock, **kw):
    kw.setdefault("credential", CREDENTIAL)
    return LineClientFactory(role="provider", node="print01", clock=clock, **kw)


@pytest.mark.parametrize("allow_plain", [True, False], ids=["9191", "9192"])
def test_tls_with_pcnet_alpn_gets_the_line_protocol(pki, allow_plain):
    server = Server(pki, allow_plain=allow_plain)
    factory = node_factory(server.clock)
    client = tls_client(factory, tls.client_tls_options("pcnet.test", pki.ca_pem), server.clock)
    node = client.wrappedProtocol
    _, pump = server.connect(client)
    d = factory.prepare(node)
    pump.flush()
    assert result_of(d) is node
    who = node.request("whoami")
    pump.flush()
    assert result_of(who) == {"node": "print01", "alpn": "pcnet/1"}
    assert list(server.line.sessions) == [("provider", "print01")]


def test_tls_only_port_refuses_plain_http_with_a_hint(pki):
    server = Server(pki, allow_plain=False)
    _, client = plain_client()
    _, pump = server.connect(client)
    client.transport.write(GET)
    pump.flush()
    assert client.received.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"TLS only" in client.received
    assert client.lost is not None


def test_tls_only_port_drops_other_clear_text_silently(pki):
    server = Server(pki, allow_plain=False)
    _, client = plain_client()
    _, pump = server.connect(client)
    client.transport.write(b'{"op":"ping","id":1}\n')
    pump.flush()
    assert client.received == b""
    assert client.lost is not None


def test_tls_only_port_still_serves_https(pki):
    server = Server(pki, allow_plain=False)
    app = Recorder()
    client = tls_client(app, tls.client_tls_options("pcnet.test", pki.ca_pem, alpn=()),
                        server.clock)
    _, pump = server.connect(client)
    app.instances[0].transport.write(GET)
    pump.flush()
    assert app.instances[0].received.endswith(b"hello over https")


def test_a_silent_connection_is_dropped_after_the_negotiation_timeout(pki):
    server = Server(pki)
    _, client = plain_client()
    _server_protocol, pump = server.connect(client)
    server.clock.advance(9.9)
    pump.flush()
    assert client.lost is None
    server.clock.advance(0.1)
    pump.flush()
    assert client.lost is not None


def test_a_stalled_tls_handshake_is_dropped_after_the_negotiation_timeout(pki):
    server = Server(pki)
    _, client = plain_client()
    _, pump = server.connect(client)
    client.transport.write(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
    pump.flush()
    assert server.mux.negotiation_timeout == 10   # the default (it was 30 s)
    server.clock.advance(9.9)
    pump.flush()
    assert client.lost is None
    server.clock.advance(0.1)
    pump.flush()
    assert client.lost is not None


def test_the_timeout_does_not_touch_established_connections(pki):
    server = Server(pki)
    factory = node_factory(server.clock)
    client = tls_client(factory, tls.client_tls_options("pcnet.test", pki.ca_pem), server.clock)
    node = client.wrappedProtocol
    _, pump = server.connect(client)
    result_of_prepare = factory.prepare(node)
    pump.flush()
    result_of(result_of_prepare)
    for _ in range(10):
        server.clock.advance(5)
        pump.flush()
    assert node.is_connected


def test_the_credential_is_not_sent_to_a_server_with_the_wrong_name(pki):
    server = Server(pki)
    factory = node_factory(server.clock, credential="do-not-leak")
    client = tls_client(factory, tls.client_tls_options("wrong.example", pki.ca_pem),
                        server.clock)
    node = client.wrappedProtocol
    _, pump = server.connect(client)  # the handshake happens (and fails) here
    d = factory.prepare(node)
    pump.flush()
    failure_of(d, LinkDown)
    assert server.registry.status("provider", "print01") is not None  # unchanged record
    assert server.line.sessions == {}
    assert len(server.registry.nodes()) == 1


def test_a_node_refuses_a_tls_server_that_does_not_speak_pcnet(pki):
    clock = task.Clock()
    https_only = CertificateOptions(
        privateKey=tls.serialization.load_pem_private_key(pki.server_key_pem, None),
        certificate=tls.x509.load_pem_x509_certificate(pki.server_pem),
        acceptableProtocols=[b"http/1.1"],
    )
    web = Recorder()
    server_protocol = tls_server(web, https_only, clock)
    factory = node_factory(clock)
    client = tls_client(factory, tls.client_tls_options("pcnet.test", pki.ca_pem), clock)
    node = client.wrappedProtocol
    pump = connect_in_memory(server_protocol, client, clock)
    d = factory.prepare(node)
    pump.flush()
    failure_of(d, LinkDown)
    assert all(p.received == b"" for p in web.instances)


def test_start_and_stop_reach_the_inner_factories(pki):
    server = Server(pki)
    calls = []

    class Counting(Factory):
        def startFactory(self):
            calls.append("start")

        def stopFactory(self):
            calls.append("stop")

    mux = MultiplexingFactory(Counting(), Counting(), tls.server_tls_options(
        pki.server_pem, pki.server_key_pem), allow_plain=True)
    mux.doStart()
    mux.doStop()
    assert calls == ["start", "start", "stop", "stop"]
    del server


# --- connection caps and deadlines -----------------------------------------------------------


def capped_server(pki, *, total=4, per_source=2, negotiation_timeout=10.0):
    from pcnet.net.limits import ConnectionLimits

    server = Server(pki)
    limits = ConnectionLimits(max_total=total, max_per_source=per_source, clock=server.clock)
    server.mux = MultiplexingFactory(
        server.site, server.line, tls.server_tls_options(pki.server_pem, pki.server_key_pem),
        allow_plain=True, clock=server.clock, limits=limits,
        negotiation_timeout=negotiation_timeout)
    return server, limits


def addr(host, port=40000):
    from twisted.internet.address import IPv4Address, IPv6Address

    return (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)


def open_from(server, host):
    """A connection accepted from `host`, or None when the listener refused it."""
    from twisted.internet.testing import StringTransport

    protocol = server.mux.buildProtocol(addr(host))
    if protocol is not None:
        protocol.makeConnection(StringTransport(peerAddress=addr(host)))
    return protocol


def close(protocol):
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    protocol.connectionLost(Failure(ConnectionDone()))


def test_connections_over_the_per_address_cap_are_refused_at_accept(pki):
    """A third connection from one address is refused by the port (buildProtocol gives
    None: the socket is closed before any TLS or HTTP state exists); others still get in."""
    server, limits = capped_server(pki, total=10, per_source=2)
    first, second = open_from(server, "10.9.0.1"), open_from(server, "10.9.0.1")
    assert first is not None and second is not None
    assert open_from(server, "10.9.0.1") is None
    assert open_from(server, "10.9.0.2") is not None
    assert limits.total == 3 and limits.refused == 1


def test_connections_over_the_total_cap_are_refused(pki):
    server, limits = capped_server(pki, total=3, per_source=3)
    held = [open_from(server, f"10.9.1.{i}") for i in range(3)]
    assert None not in held
    assert open_from(server, "10.9.1.200") is None
    close(held[0])
    assert open_from(server, "10.9.1.200") is not None


def test_closing_a_connection_frees_its_slot_whatever_stage_it_reached(pki):
    """Slots are given back for connections dropped while sniffing, mid-TLS-handshake, and
    after reaching HTTP or pcnet/1, each exactly once."""
    server, limits = capped_server(pki, total=10, per_source=3)
    sniffing = open_from(server, "10.9.2.1")
    handshaking = open_from(server, "10.9.2.1")
    handshaking.dataReceived(b"\x16\x03\x01\x00")
    http = open_from(server, "10.9.2.1")
    http.dataReceived(b"GET / HTTP/1.1\r\n")
    assert limits.held(addr("10.9.2.1")) == 3
    assert open_from(server, "10.9.2.1") is None
    for p in (sniffing, handshaking, http):
        close(p)
    assert limits.total == 0 and limits.sources == 0   # nothing left behind per address
    assert open_from(server, "10.9.2.1") is not None


def test_a_timed_out_connection_frees_its_slot(pki):
    server, limits = capped_server(pki, total=10, per_source=1, negotiation_timeout=5)
    _, client = plain_client()
    server_protocol = server.mux.buildProtocol(NODE_ADDR)
    pump = connect_in_memory(server_protocol, client, server.clock)
    assert limits.held(NODE_ADDR) == 1
    server.clock.advance(5)
    pump.flush()
    assert client.lost is not None and limits.held(NODE_ADDR) == 0


def test_an_ipv6_source_is_counted_by_its_64(pki):
    """Any host gets a /64 of IPv6 addresses, so the per-address cap counts the /64."""
    server, _ = capped_server(pki, total=10, per_source=2)
    assert open_from(server, "2001:db8:1:2::1") is not None
    assert open_from(server, "2001:db8:1:2:ffff::9") is not None
    assert open_from(server, "2001:db8:1:2::77") is None
    assert open_from(server, "2001:db8:1:3::1") is not None
    assert open_from(server, "::ffff:10.9.3.1") is not None   # IPv4-mapped counts as IPv4


def test_refused_connections_are_logged_at_most_once_a_minute():
    from twisted.logger import capturedLogs

    from pcnet.net.limits import ConnectionLimits

    clock = task.Clock()
    limits = ConnectionLimits(max_total=1000, max_per_source=1, clock=clock)
    assert limits.admit(addr("10.9.4.1")) is not None
    with capturedLogs() as events:
        for _ in range(500):
            assert limits.admit(addr("10.9.4.1")) is None
        clock.advance(60)
        assert limits.admit(addr("10.9.4.1")) is None
    lines = [e for e in events if "refusing" in e.get("log_format", "")]
    assert len(lines) == 2 and lines[1]["left_out"] == 499
    assert all(e["log_level"].name == "warn" for e in lines)


def test_the_descriptor_limit_lowers_the_total_cap_when_it_is_smaller():
    from pcnet.net.limits import RESERVED_DESCRIPTORS, ConnectionLimits, raise_open_file_limit

    limits = ConnectionLimits(max_total=10_000, max_per_source=64, clock=task.Clock())
    assert limits.fit_to_descriptors(1 << 20) is False and limits.max_total == 10_000
    assert limits.fit_to_descriptors(4096) is True
    assert limits.max_total == 4096 - RESERVED_DESCRIPTORS
    before, after, hard = raise_open_file_limit()
    import resource

    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == after and before <= after <= hard


# --- handshakes take turns ----------------------------------------------------------------------


class StepTimer:
    """A timer for StrangerWork's budget: each reading is `step` seconds after the last."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_stranger_work_runs_a_budget_per_turn_and_the_rest_later():
    from pcnet.net.limits import StrangerWork

    clock = task.Clock()
    work = StrangerWork(clock, budget=0.02, timer=StepTimer(0.006))   # 4 items per turn
    done = []
    for i in range(10):
        work.add(lambda i=i: done.append(i))
    work.add(lambda: 1 / 0)                  # a failing item is logged, the rest go on
    work.add(lambda: done.append("last"))
    turns = 0
    while len(work):
        one_turn(clock)
        turns += 1
        assert len(done) <= 4 * turns
    assert done == [*range(10), "last"] and turns == 3 and work.deferred_turns == 2


def test_a_flood_of_handshakes_waits_its_turn_while_plain_http_is_answered(pki):
    """ClientHellos arriving together are worked through a budget at a time; an HTTP request
    arriving among them is answered at once, and a connection that leaves while waiting costs
    nothing."""
    from pcnet.net.limits import StrangerWork

    from twisted.test import iosim

    server = Server(pki)
    server.mux.handshakes = StrangerWork(server.clock, budget=0.001, timer=StepTimer(0.002))

    def connect(client):
        server_protocol = server.mux.buildProtocol(NODE_ADDR)
        pump = iosim.connect(
            server_protocol, iosim.FakeTransport(server_protocol, isServer=True, peerAddress=NODE_ADDR),
            client, iosim.FakeTransport(client, isServer=False), greet=False, clock=server.clock)
        pump.flush(advanceClock=False)   # bytes move; no reactor turn passes
        return server_protocol, pump

    flood = [connect(tls_client(Recorder(), tls.client_tls_options("pcnet.test", pki.ca_pem),
                                server.clock)) for _ in range(5)]
    assert all(p._inner is None for p, _ in flood) and len(server.mux.handshakes) == 5
    _, plain = plain_client()
    _, plain_pump = connect(plain)
    plain.transport.write(GET)
    plain_pump.flush(advanceClock=False)
    assert plain.received.startswith(b"HTTP/1.1 200 OK")      # not behind the handshakes
    assert len(server.mux.handshakes) == 5
    close(flood[4][0])                                           # gone while waiting
    one_turn(server.clock)
    assert [p._inner is not None for p, _ in flood] == [True, False, False, False, False]
    for _ in range(4):
        one_turn(server.clock)
    assert [p._inner is not None for p, _ in flood] == [True, True, True, True, False]
    assert len(server.mux.handshakes) == 0


def test_a_connection_waiting_for_its_handshake_may_not_pile_up_data(pki):
    from pcnet.net.limits import StrangerWork

    server = Server(pki)
    server.mux.handshakes = StrangerWork(server.clock)
    protocol = open_from(server, "10.9.5.1")
    protocol.dataReceived(b"\x16\x03\x01")
    for _ in range(4):
        protocol.dataReceived(b"x" * 16384)
    assert protocol.transport.disconnected   # aborted
