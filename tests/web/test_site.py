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


def test_the_access_log_keeps_query_keys_but_never_their_values():
    """Tokens sent in a URL (or in the page a link came from) must not reach the access log."""
    import io

    log = io.StringIO()
    site = PcnetSite(Echo())
    site.logFile = log
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"POST /api/v1/jobs?token=S3CRET-1&since=2025-01-01&flag HTTP/1.1\r\n"
                          b"Host: x\r\nReferer: https://h/page?password=S3CRET-2#top\r\n"
                          b"Content-Length: 0\r\n\r\n")
    line = log.getvalue()
    assert '"POST /api/v1/jobs?token&since&flag HTTP/1.1" 200' in line
    assert '"https://h/page?password"' in line
    assert "S3CRET" not in line and "2025-01-01" not in line


def test_query_values_are_dropped_from_odd_uris_too():
    from pcnet.web.site import without_query_values

    assert without_query_values(b"/p") == b"/p"
    assert without_query_values(b"/p?") == b"/p?"
    assert without_query_values(b"/p?a=1&&b=2=3#f=4") == b"/p?a&b"
    assert without_query_values(b"/p#frag?x=1") == b"/p"
    assert without_query_values(b"/p?" + b"k" * 100 + b"=v") == b"/p?" + b"k" * 64
