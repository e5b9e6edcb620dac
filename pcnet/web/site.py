"""The HTTP site of a pcnet server: `twisted.web.server.Site` with deadlines and size limits that
a stranger cannot stretch, and an access log that keeps secrets out.

- **Request deadline**: from the first byte of a request to the last byte of its body, at most
  `request_timeout` seconds; then 408 and the connection is closed. Twisted's own timer is an
  idle timer that every byte restarts, so a client trickling one byte every few seconds could
  hold a connection (and a descriptor) for ever; this one is never restarted.
- **Keep-alive deadline**: a connection waiting for its next request (or its first, after a TLS
  handshake) is closed after `idle_timeout` seconds.
- **Headers**: at most `max_headers` header lines and `max_header_bytes` bytes for the request
  line and headers together (and for any one line), else 400.
- **Body**: Twisted buffers a whole request body (in memory, or a temporary file past 100 KB)
  before any resource sees it, so a size check in the API alone still lets a client fill the
  disk. A body that declares, or grows, past `max_request_body` is refused as it arrives: 413
  with pcnet's error shape, and the connection is closed. And all the bodies being received or
  handled at once, on every connection, may hold at most `max_request_bodies` bytes (memory
  and temporary files together): past it a request gets 503 `busy` (with `Retry-After`) and
  its connection is closed, so many connections each sending a body just under the limit
  cannot fill memory or the disk either.
- **Access log** (`access_log_line`): Twisted's combined log format, except that a query string
  or a Referer's query keeps its keys and loses its values (`/api/v1/jobs?user&since`): a token
  or a password put in a URL never reaches the log.

While a resource works on a request no deadline runs (an API call may wait for the database);
the keep-alive deadline starts again when the response is done. A connection closed by a
deadline is aborted if it has not gone `abort_timeout` seconds later (a peer that reads nothing
cannot keep it either). Connection caps live in the listener (`pcnet.net.limits`).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

from twisted.logger import Logger
from twisted.web.http import HTTPChannel, combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.server import Request, Site
from zope.interface import provider

from pcnet.net.limits import RateLimitedLog, StrangerWork

log = Logger(namespace="pcnet.web.site")

#: Larger than any admin API request (whose own limit is 1 MiB) needs.
MAX_REQUEST_BODY = 4 * 1024 * 1024
#: Bytes of request bodies held at once, all connections together.
MAX_REQUEST_BODIES = 64 * 1024 * 1024
#: Seconds from a request's first byte to the end of its body.
REQUEST_TIMEOUT = 30.0
#: Seconds a connection may wait for its next request.
IDLE_TIMEOUT = 15.0
#: Header lines per request (Twisted allows 500).
MAX_HEADERS = 100
#: Bytes of request line plus headers, and of any one of those lines.
MAX_HEADER_BYTES = 16384
#: Seconds a connection closed by a deadline has to go before it is aborted.
ABORT_TIMEOUT = 5.0

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
            503: b"Service Unavailable"}


def error_response(status: int, code: str, message: str, *, retry_after: int | None = None) -> bytes:
    """A complete `Connection: close` HTTP response with pcnet's error body, written raw
    (for when no `Request` is there to answer: the request never finished arriving)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    retry = b"Retry-After: %d\r\n" % retry_after if retry_after is not None else b""
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\n%sContent-Length: %d\r\n\r\n%s"
            % (status, _REASONS[status], retry, len(body), body))


def _refusal(limit: int) -> bytes:
    return error_response(413, "too_large", f"request body is larger than {limit} bytes")


class LimitedRequest(Request):
    """A request whose body may not exceed `channel.site.max_request_body` bytes, and whose
    body counts against the site's `max_request_bodies` while the request lasts."""

    _received = 0
    _reserved = 0
    _declared = False
    _refused = False

    def _limit(self) -> int:
        return getattr(self.channel.site, "max_request_body", MAX_REQUEST_BODY)

    def _refuse(self, response: bytes | None = None) -> None:
        if not self._refused:
            self._refused = True
            self._release_body()
            self.channel.transport.write(response or _refusal(self._limit()))
            close = getattr(self.channel, "close_after_error", None)
            if close is not None:
                close()
            else:
                self.channel.transport.loseConnection()

    def _reserve_body(self, size: int) -> bool:
        """Count `size` more bytes against the site's budget for bodies; False (and 503) if
        there is no room."""
        site = self.channel.site
        budget = getattr(site, "bodies", None)
        if budget is None or size <= 0:
            return True
        if not budget.take(size):
            site.stranger_log.event(
                "bodies_full", "request bodies in progress reached [http] max_request_bodies "
                "({limit} bytes); refusing a request from {peer} with 503",
                limit=budget.limit, peer=self.channel.transport.getPeer())
            self._refuse(error_response(503, "busy", "the server is receiving too many request "
                                        "bodies at once; try again shortly", retry_after=1))
            return False
        self._reserved += size
        return True

    def _release_body(self) -> None:
        reserved, self._reserved = self._reserved, 0
        if reserved:
            self.channel.site.bodies.give_back(reserved)

    def gotLength(self, length):
        if length is not None and length > self._limit():
            self._refuse()
            return super().gotLength(0)
        if length is not None:
            self._declared = True
            if not self._reserve_body(length):
                return super().gotLength(0)
        return super().gotLength(length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit():
            self._refuse()
            return
        if not self._declared and not self._reserve_body(len(data)):
            return
        super().handleContentChunk(data)

    def finish(self):
        self._release_body()
        return super().finish()

    def connectionLost(self, reason):
        self._release_body()
        super().connectionLost(reason)

    def requestReceived(self, command, path, version):
        if self._refused:
            return
        super().requestReceived(command, path, version)


def without_query_values(uri: bytes) -> bytes:
    """`uri` with each query parameter's value (and any fragment) removed: `/p?a=1&b` ->
    `/p?a&b`. Keys longer than 64 bytes are cut, so a secret sent as a key is cut short too."""
    path, sep, query = uri.partition(b"#")[0].partition(b"?")
    if not sep:
        return path
    keys = [part.partition(b"=")[0][:64] for part in query.split(b"&") if part]
    return path + b"?" + b"&".join(keys)


def _referrer_without_query_values(referrer: bytes) -> bytes:
    try:
        parts = urlsplit(referrer)
    except ValueError:
        return b"-"
    cleaned = without_query_values(b"?" + parts.query if parts.query else b"")
    return urlunsplit(parts._replace(query=cleaned.partition(b"?")[2], fragment=b""))


class _Redacted:
    """A request as the access log formatter sees it: query values taken out of the URI and
    of the Referer header; anything else is the request's."""

    def __init__(self, request):
        self._request = request
        self.uri = without_query_values(request.uri or b"")

    def getHeader(self, name):
        value = self._request.getHeader(name)
        if value is not None and name.lower() in (b"referer", "referer"):
            value = _referrer_without_query_values(value if isinstance(value, bytes) else value.encode())
        return value

    def __getattr__(self, name):
        return getattr(self._request, name)


@provider(IAccessLogFormatter)
def access_log_line(timestamp, request) -> str:
    """The combined log format line of `request`, without query string values."""
    return combinedLogFormatter(timestamp, _Redacted(request))
class PcnetHTTPChannel(HTTPChannel):
    """HTTP/1.1 with a request deadline nothing can extend and a keep-alive deadline.

    Its settings come from its site (`PcnetSite`); Twisted's idle timer (`timeOut`) is off.
    """

    _waiting = True          # between requests: waiting for the first byte of the next one
    _request_timer = None
    _idle_timer = None
    _closing = False
    _lost = False

    def connectionMade(self):
        site = self.site
        self.maxHeaders = site.max_headers
        self.totalHeadersSize = site.max_header_bytes
        self.MAX_LENGTH = site.max_header_bytes   # LineReceiver's limit for one line
        self.abortTimeout = site.abort_timeout
        super().connectionMade()
        self._arm_idle()

    def dataReceived(self, data):
        if self._waiting and data and not self._closing:
            # The first byte of a request: its whole head and body must be here in time.
            self._waiting = False
            self._cancel_idle()
            self._request_timer = self.callLater(self.site.request_timeout, self._request_late)
        super().dataReceived(data)

    def allContentReceived(self):
        self._cancel_request_timer()
        super().allContentReceived()

    def requestDone(self, request):
        # Set before Twisted replays pipelined bytes (from inside requestDone), so that they
        # start the next request's deadline.
        self._waiting = True
        super().requestDone(request)
        if self._closing:
            return
        if not self.persistent:
            # Twisted closes after the response; a peer that never reads it would keep the
            # connection for ever.
            if self._abortingCall is None and not self._lost:
                self._abortingCall = self.callLater(self.site.idle_timeout, self.forceAbortClient)
        elif self._waiting:
            self._arm_idle()

    def connectionLost(self, reason):
        self._lost = True
        self._cancel_request_timer()
        self._cancel_idle()
        super().connectionLost(reason)

    # --- deadlines -----------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        self._cancel_idle()
        self._idle_timer = self.callLater(self.site.idle_timeout, self._idle_expired)

    def _cancel_idle(self) -> None:
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _cancel_request_timer(self) -> None:
        timer, self._request_timer = self._request_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _idle_expired(self) -> None:
        self._idle_timer = None
        # Connections opened together expire together: their closes take turns with the
        # reactor's other work (StrangerWork) instead of all running in one go.
        self.site.stranger_work.add(self._close_idle)

    def _close_idle(self) -> None:
        if self._waiting and not self._handlingRequest and not self._lost:
            self.close_after_error()

    def _request_late(self) -> None:
        self._request_timer = None
        self.site.stranger_work.add(self._answer_late)

    def _answer_late(self) -> None:
        if self._closing or self._waiting or self._lost:
            return
        site = self.site
        site.stranger_log.event(
            "request_timeout",
            "HTTP request from {peer} not complete {t:g} s after its first byte; closing",
            peer=self.transport.getPeer(), t=site.request_timeout)
        self.transport.write(error_response(
            408, "request_timeout",
            f"the request (headers and body) did not arrive within {site.request_timeout:g} s"))
        self.close_after_error()

    def close_after_error(self) -> None:
        """Close now (what is written is still sent) and abort if not gone in abort_timeout."""
        if self._closing:
            return
        self._closing = True
        self._cancel_request_timer()
        self._cancel_idle()
        self.loseConnection()
        if self.abortTimeout is not None and self._abortingCall is None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)

    def forceAbortClient(self):
        # Twisted's logs a line per connection: strangers could flood the log with them.
        self._abortingCall = None
        self.transport.abortConnection()

    def lineLengthExceeded(self, line):
        self._respondToBadRequestAndDisconnect()

    def _respondToBadRequestAndDisconnect(self):
        # Too many or too long headers, a malformed request line or header: 400, and closed
        # even if the peer reads nothing.
        self.transport.write(error_response(400, "bad_request", "malformed request, or its "
                                            "headers are too many or too long"))
        self.close_after_error()


class BodyBudget:
    """Bytes of request bodies a site holds at once (memory and temporary files together)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


class PcnetSite(Site):
    """The site every pcnet server serves its web resources with (see the module's doc).

    `reactor` (any `IReactorTime`, e.g. a `task.Clock` in tests) runs the deadlines;
    `stranger_work` (a `pcnet.net.limits.StrangerWork`) is where their closes queue.
    """

    requestFactory = LimitedRequest
    protocol = PcnetHTTPChannel

    def __init__(self, resource, *, max_request_body: int = MAX_REQUEST_BODY,
                 request_timeout: float = REQUEST_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 max_headers: int = MAX_HEADERS, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_request_bodies: int = MAX_REQUEST_BODIES,
                 abort_timeout: float = ABORT_TIMEOUT, **kw):
        kw.setdefault("logFormatter", access_log_line)
        kw["timeout"] = None   # Twisted's idle timer: replaced by the channel's deadlines
        super().__init__(resource, **kw)
        self.max_request_body = max_request_body
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.abort_timeout = abort_timeout
        self.bodies = BodyBudget(max(max_request_bodies, max_request_body))
        self.stranger_log = RateLimitedLog(self.reactor, log, level="info")
        # Deadline closes take turns with other work; the server shares its queue here.
        self.stranger_work = StrangerWork(self.reactor)
        #: Called with every finished request (the server's metrics count them), or None.
        self.count_request = None

    def log(self, request):
        super().log(request)
        if self.count_request is not None:
            self.count_request(request)
