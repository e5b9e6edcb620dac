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
    server.clock.advance(29.9)
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
    server.clock.advance(30)
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
