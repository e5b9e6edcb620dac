"""Request bodies past the site's limit are refused as they arrive, never buffered whole."""

from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from pcnet.web.site import PcnetSite


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request):
        return b"got %d" % len(request.content.read())


def connect(limit=100):
    site = PcnetSite(Echo(), max_request_body=limit)
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_body_within_limit_is_served():
    protocol, transport = connect()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert b"200 OK" in transport.value() and transport.value().endswith(b"got 5")


def test_declared_length_over_limit_is_refused_before_the_body_arrives():
    protocol, transport = connect()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert b'"code": "too_large"' in transport.value()
    assert transport.disconnecting


def test_chunked_body_growing_past_limit_is_refused():
    protocol, transport = connect()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(5):
        protocol.dataReceived(b"20\r\n" + b"x" * 32 + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert b"got" not in transport.value()
    assert transport.disconnecting
