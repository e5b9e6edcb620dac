"""The HTTP site of a pcnet server: `twisted.web.server.Site` with a limit on request bodies
and an access log that keeps secrets out.

Twisted buffers a whole request body (in memory, or a temporary file past 100 KB) before any
resource sees it, so a size check in the API alone still lets a client fill the disk. Here a
body that declares, or grows, past the limit is refused as it arrives: 413 with pcnet's error
shape, and the connection is closed.

The access log (`access_log_line`) is Twisted's combined log format, except that a query string
or a Referer's query keeps its keys and loses its values (`/api/v1/jobs?user&since`): a token
or a password put in a URL never reaches the log.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.server import Request, Site
from zope.interface import provider

#: Larger than any admin API request (whose own limit is 1 MiB) needs.
MAX_REQUEST_BODY = 4 * 1024 * 1024


def _refusal(limit: int) -> bytes:
    body = json.dumps({"error": {"code": "too_large",
                                 "message": f"request body is larger than {limit} bytes"}}).encode()
    return (b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class LimitedRequest(Request):
    """A request whose body may not exceed `channel.site.max_request_body` bytes."""

    _received = 0
    _refused = False

    def _limit(self) -> int:
        return getattr(self.channel.site, "max_request_body", MAX_REQUEST_BODY)

    def _refuse(self) -> None:
        if not self._refused:
            self._refused = True
            self.channel.transport.write(_refusal(self._limit()))
            self.channel.transport.loseConnection()

    def gotLength(self, length):
        if length is not None and length > self._limit():
            self._refuse()
            return super().gotLength(0)
        return super().gotLength(length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit():
            self._refuse()
            return
        super().handleContentChunk(data)

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


class PcnetSite(Site):
    """The site every pcnet server serves its web resources with."""

    requestFactory = LimitedRequest

    def __init__(self, resource, *, max_request_body: int = MAX_REQUEST_BODY, **kw):
        kw.setdefault("logFormatter", access_log_line)
        super().__init__(resource, **kw)
        self.max_request_body = max_request_body
