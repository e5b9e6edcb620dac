"""The HTTP site's limits, in memory (StringTransport, task.Clock): request bodies past the
limit are refused as they arrive; a request must arrive whole within its deadline however its
bytes trickle in; idle keep-alive connections are closed; header count and size are bounded."""

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from pcnet.web.site import PcnetSite

PEER = IPv4Address("TCP", "10.2.3.4", 50000)


class Echo(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.slow = []

    def render_GET(self, request):
        if request.path == b"/slow":
            self.slow.append(request)
            return NOT_DONE_YET
        return b"ok"

    def render_POST(self, request):
        return b"got %d" % len(request.content.read())


def connect(limit=100, **kw):
    clock = task.Clock()
    site = PcnetSite(Echo(), max_request_body=limit, reactor=clock, **kw)
    protocol = site.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, transport, clock


def test_body_within_limit_is_served():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert b"200 OK" in transport.value() and transport.value().endswith(b"got 5")


def test_declared_length_over_limit_is_refused_before_the_body_arrives():
    protocol, transport, _ = connect()
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert b'"code": "too_large"' in transport.value()
    assert transport.disconnecting


def test_chunked_body_growing_past_limit_is_refused():
    protocol, transport, _ = connect()
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
# --- deadlines ---------------------------------------------------------------------------------


def test_a_request_trickled_a_byte_at_a_time_gets_408_at_its_deadline():
    """Slowloris: a byte every second restarts any idle timer (Twisted's did), never this
    deadline: 30 s after the request's first byte it is answered 408 and closed."""
    protocol, transport, clock = connect()
    request = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 100
    for byte in request[:30]:
        protocol.dataReceived(bytes([byte]))
        clock.advance(0.99)
    assert not transport.disconnecting
    clock.advance(0.5)
    assert transport.value().startswith(b"HTTP/1.1 408")
    assert b'"code": "request_timeout"' in transport.value()
    assert transport.disconnecting


def test_a_body_trickled_in_is_held_to_the_same_deadline():
    protocol, transport, clock = connect(limit=10_000, request_timeout=20)
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(19):
        clock.advance(1)
        protocol.dataReceived(b"x")
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408") and transport.disconnecting


def test_a_peer_that_reads_nothing_is_aborted_after_the_close():
    protocol, transport, clock = connect()
    protocol.dataReceived(b"GET / HT")
    clock.advance(30)
    assert transport.disconnecting and not transport.disconnected   # closing gracefully
    clock.advance(5)
    assert transport.disconnected                                      # then aborted


def test_a_request_in_time_is_served_and_the_deadline_is_not_left_running():
    protocol, transport, clock = connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
    clock.advance(29)
    protocol.dataReceived(b"\r\n")
    assert b"200 OK" in transport.value()
    clock.advance(10)   # past the first request's deadline: nothing happens
    assert not transport.disconnecting


def test_an_idle_keep_alive_connection_is_closed():
    protocol, transport, clock = connect(idle_timeout=15)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in transport.value()
    clock.advance(14.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting


def test_a_connection_that_never_sends_a_request_is_closed_after_the_idle_timeout():
    """After a TLS handshake an HTTP connection may say nothing at all: the keep-alive deadline
    covers that too."""
    _, transport, clock = connect()
    clock.advance(15)
    assert transport.disconnecting and transport.value() == b""


def test_a_slow_handler_is_not_cut_off_and_the_idle_deadline_restarts_after_it():
    protocol, transport, clock = connect()
    protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    (request,) = protocol.site.resource.slow
    clock.advance(100)                      # the database is slow: no deadline runs meanwhile
    assert not transport.disconnecting
    request.write(b"late")
    request.finish()
    assert b"200 OK" in transport.value()
    clock.advance(14)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_a_pipelined_request_gets_its_own_deadline():
    protocol, transport, clock = connect()
    protocol.dataReceived(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
    (request,) = protocol.site.resource.slow
    clock.advance(60)
    request.finish()                        # the buffered second request starts now
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value().count(b"HTTP/1.1 408") == 1 and transport.disconnecting


def test_timeouts_are_logged_at_most_once_a_minute():
    clock = task.Clock()
    site = PcnetSite(Echo(), reactor=clock)
    with capturedLogs() as events:
        for _ in range(200):
            p = site.buildProtocol(PEER)
            p.makeConnection(StringTransport(peerAddress=PEER))
            p.dataReceived(b"G")
        clock.advance(40)
    assert len([e for e in events if "not complete" in e.get("log_format", "")]) == 1
    assert not [e for e in events if "Timing out" in e.get("log_format", "")]


# --- headers -----------------------------------------------------------------------------------


def test_more_than_100_headers_are_refused():
    protocol, transport, _ = connect()
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400") and transport.disconnecting


def test_a_few_headers_are_fine():
    protocol, transport, _ = connect()
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(90))
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert b"200 OK" in transport.value()


@pytest.mark.parametrize("headers", [
    b"X-Big: " + b"v" * 17000 + b"\r\n",                               # one line too long
    b"".join(b"X-H%d: " % i + b"v" * 1000 + b"\r\n" for i in range(17)),  # too much in all
])
def test_headers_over_16_kib_are_refused(headers):
    protocol, transport, _ = connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400") and transport.disconnecting
    assert b"200 OK" not in transport.value()


def test_header_limits_are_configurable():
    protocol, transport, _ = connect(max_headers=5, max_header_bytes=2048)
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n" +
                          b"".join(b"X-H%d: v\r\n" % i for i in range(6)) + b"\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400")


# --- all bodies together ------------------------------------------------------------------------


def shared_site(**kw):
    clock = task.Clock()
    site = PcnetSite(Echo(), reactor=clock, **kw)

    def connection():
        protocol = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        return protocol, transport

    return site, connection


def test_bodies_on_all_connections_share_one_budget():
    """Many connections each sending a body under the per-request limit cannot, together,
    hold more than max_request_bodies: the one that would go over gets 503 busy."""
    site, connection = shared_site(max_request_body=100, max_request_bodies=150)
    p1, t1 = connection()
    p1.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    p2, t2 = connection()
    p2.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n")
    assert t2.value().startswith(b"HTTP/1.1 503") and b'"code": "busy"' in t2.value()
    assert b"Retry-After: 1" in t2.value() and t2.disconnecting
    assert site.bodies.held == 100
    p1.dataReceived(b"x" * 90)                   # the first completes and is answered ...
    assert t1.value().endswith(b"got 100") and site.bodies.held == 0   # ... and gives back
    p3, t3 = connection()
    p3.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n" + b"y" * 60)
    assert t3.value().endswith(b"got 60")


def test_chunked_bodies_count_as_they_arrive_and_a_lost_connection_gives_back():
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    site, connection = shared_site(max_request_body=1000, max_request_bodies=1000)
    p1, _ = connection()
    p1.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    p1.dataReceived(b"20\r\n" + b"x" * 32 + b"\r\n")
    assert site.bodies.held == 32
    p1.connectionLost(Failure(ConnectionLost()))
    assert site.bodies.held == 0
    p2, _ = connection()
    p2.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n")
    p2.connectionLost(Failure(ConnectionLost()))   # mid-body: released too
    assert site.bodies.held == 0


def test_deadline_closes_take_turns_and_skip_connections_already_gone():
    """Slowloris connections opened together expire together: their 408s go through the
    site's StrangerWork queue; one that went meanwhile is skipped."""
    from itertools import count

    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    from pcnet.net.limits import StrangerWork
    from tests.net._support import one_turn

    clock = task.Clock()
    site = PcnetSite(Echo(), reactor=clock)
    ticks = count()
    site.stranger_work = StrangerWork(clock, budget=0.5, timer=lambda: next(ticks))
    conns = []
    for _ in range(3):
        protocol = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HT")
        conns.append((protocol, transport))
    one_turn(clock, 30)            # the three deadlines pass; their closes are queued
    conns[2][0].connectionLost(Failure(ConnectionLost()))
    one_turn(clock)                # one close per turn with this budget
    assert [t.disconnecting for _, t in conns] == [True, False, False]
    clock.advance(0)
    assert conns[1][1].value().startswith(b"HTTP/1.1 408")
    assert conns[2][1].value() == b""   # gone before its turn: nothing written


def test_a_connection_close_response_the_peer_never_reads_is_aborted():
    """After `Connection: close` Twisted only closes once the response is sent; a peer that
    reads nothing would hold the connection for ever. It is aborted after the idle timeout."""
    protocol, transport, clock = connect()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"200 OK" in transport.value() and transport.disconnecting
    assert not transport.disconnected
    clock.advance(15)
    assert transport.disconnected
