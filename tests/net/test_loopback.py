"""End to end over real loopback TCP with the real reactor: one port, HTTP, HTTPS and pcnet/1.

treq talks HTTP and HTTPS (verifying the test CA) to a tiny Klein app behind the multiplexing
listener, and a pcnet/1 node connects to the same port, says hello and exchanges requests both
ways.
"""

import pytest
import pytest_twisted
import treq
from klein import Klein
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, endpoints, ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.server import Site

from pcnet.net import tls
from pcnet.net.line import (
    LineClientFactory,
    LineServerFactory,
    LinkDown,
    Operations,
    RemoteError,
    connect,
)
from pcnet.net.listener import MultiplexingFactory
from pcnet.net.registry import MemoryNodeRegistry

pytestmark = pytest.mark.filterwarnings("error:Passing pyOpenSSL:DeprecationWarning")


class Web:
    app = Klein()

    @app.route("/hello")
    def hello(self, request):
        return "hello over " + ("https" if request.isSecure() else "http")


async def listen(reactor, pki, *, allow_plain, ops=None, registry=None):
    registry = registry or MemoryNodeRegistry(auto_approve_networks=["127.0.0.0/8"])
    line = LineServerFactory(ops or Operations(), registry, clock=reactor, server_name="app1")
    mux = MultiplexingFactory(
        Site(Web().app.resource()),
        line,
        tls.server_tls_options(pki.server_pem, pki.server_key_pem, pki.ca_pem),
        allow_plain=allow_plain,
        clock=reactor,
    )
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(mux)
    return port, line


def http_client(reactor, pki):
    pool = HTTPConnectionPool(reactor, persistent=False)
    agent = Agent(
        reactor,
        contextFactory=BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(pki.ca_pem)),
        pool=pool,
    )
    return treq.client.HTTPClient(agent)


def node_endpoint(reactor, pki, port, host="localhost"):
    return endpoints.wrapClientTLS(
        tls.client_tls_options(host, pki.ca_pem),
        endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port.getHost().port}"),
    )


@pytest_twisted.ensureDeferred
async def test_one_port_serves_http_https_and_pcnet(pki):
    from twisted.internet import reactor

    pushed = []
    ops = Operations()

    @ops.op("job.decide")
    async def decide(session, message):
        # The server asks the node something back while answering (requests go both ways).
        answer = await session.request("job.status", job=message["job"])
        return {"action": "print", "node": session.node, "status": answer["status"]}

    port, _line = await listen(reactor, pki, allow_plain=True, ops=ops)
    try:
        http = http_client(reactor, pki)
        base = port.getHost().port
        for url, expected in [
            (f"http://127.0.0.1:{base}/hello", "hello over http"),
            (f"https://localhost:{base}/hello", "hello over https"),
            (f"https://127.0.0.1:{base}/hello", "hello over https"),
        ]:
            response = await http.get(url)
            assert response.code == 200, url
            assert await response.text() == expected, url

        node_ops = Operations()

        @node_ops.op("job.status")
        def status(session, message):
            pushed.append(message["job"])
            return {"status": "spooled"}

        factory = LineClientFactory(
            role="provider", node="print01", credential="c" * 43, clock=reactor, ops=node_ops
        )
        node = await connect(node_endpoint(reactor, pki, port), factory)
        assert node.server_info["server"] == "app1"
        replies = await defer.gatherResults(
            [node.request("job.decide", job=i) for i in range(50)]
        )
        assert replies == [{"action": "print", "node": "print01", "status": "spooled"}] * 50
        assert sorted(pushed) == list(range(50))
        with pytest.raises(RemoteError) as info:
            await node.request("no.such.op")
        assert info.value.code == "unknown_op"
        node.close()
        await node.when_closed()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_tls_only_port_refuses_plain_http_but_serves_https_and_pcnet(pki):
    from twisted.internet import reactor

    port, _ = await listen(reactor, pki, allow_plain=False)
    try:
        http = http_client(reactor, pki)
        base = port.getHost().port
        plain = await http.get(f"http://127.0.0.1:{base}/hello")
        assert plain.code == 400
        assert "TLS only" in await plain.text()
        secure = await http.get(f"https://localhost:{base}/hello")
        assert await secure.text() == "hello over https"

        factory = LineClientFactory(
            role="site", node="site-a", credential="s" * 43, clock=reactor
        )
        # As the Print Provider keeps its link: a ClientService preparing each connection.
        service = ClientService(node_endpoint(reactor, pki, port), factory, clock=reactor,
                                retryPolicy=backoffPolicy(initialDelay=1.0, maxDelay=30.0),
                                prepareConnection=factory.prepare)
        service.startService()
        try:
            node = await service.whenConnected()
            assert node.authenticated
            assert await node.request("ping") == {}
        finally:
            await service.stopService()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_node_refuses_a_server_with_the_wrong_name(pki):
    from twisted.internet import reactor

    registry = MemoryNodeRegistry()
    port, line = await listen(reactor, pki, allow_plain=True, registry=registry)
    try:
        factory = LineClientFactory(
            role="provider", node="print01", credential="c" * 43, clock=reactor
        )
        with pytest.raises(LinkDown, match="before the TLS handshake completed"):
            await connect(node_endpoint(reactor, pki, port, host="wrong.example"), factory)
        assert registry.nodes() == [] and line.sessions == {}
    finally:
        await port.stopListening()
