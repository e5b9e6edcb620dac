"""The HTTP site of a pcnet server: `twisted.web.server.Site` with a limit on request bodies.

Twisted buffers a whole request body (in memory, or a temporary file past 100 KB) before any
resource sees it, so a size check in the API alone still lets a client fill the disk. Here a
body that declares, or grows, past the limit is refused as it arrives: 413 with pcnet's error
shape, and the connection is closed.
"""

from __future__ import annotations

import json

from twisted.web.server import Request, Site

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


class PcnetSite(Site):
    """The site every pcnet server serves its web resources with."""

    requestFactory = LimitedRequest

    def __init__(self, resource, *, max_request_body: int = MAX_REQUEST_BODY, **kw):
        super().__init__(resource, **kw)
        self.max_request_body = max_request_body
