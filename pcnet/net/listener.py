"""One listening port for browsers, API scripts and pcnet nodes (ARCHITECTURE §2).

A server's ports take plain HTTP, HTTPS and pcnet/1 on the same socket:

1. The first byte tells TLS from clear text: a TLS connection starts with a handshake record
   (content type 0x16), an HTTP request with a method name in ASCII. On a port with
   `allow_plain=False` (9192) clear text is refused.
2. After the TLS handshake, the ALPN protocol the client and server agreed on picks the
   application protocol: `pcnet/1` gets the line protocol, anything else (`http/1.1`, or no
   ALPN at all, as with older HTTP clients) gets HTTP.

So the line protocol is never reachable in clear text: a clear-text connection always goes to
HTTP. The port's endpoint is ordinary configuration (`tcp:9191`); TLS is layered here, after
sniffing, with `TLSMemoryBIOFactory`, never by the endpoint.

Before any of that, the listener asks its `ConnectionLimits` (`pcnet.net.limits`) whether the
connection may be held at all: over the total cap or the cap for its source address, the port
closes it at once (no TLS or HTTP state is ever built). And a connection must have reached HTTP
or pcnet/1 (first byte, TLS handshake) within `negotiation_timeout`.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IHandshakeListener,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from pcnet.net.limits import ConnectionLimits, RateLimitedLog, StrangerWork
from pcnet.net.tls import ALPN_PCNET, SERVER_ALPN

log = Logger(namespace="pcnet.net.listener")

_TLS_HANDSHAKE = 0x16

_PLAIN_REFUSED_BODY = b"This port speaks TLS only: use https://\n"
_PLAIN_REFUSED = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n%s" % (len(_PLAIN_REFUSED_BODY), _PLAIN_REFUSED_BODY)
)


@implementer(IHandshakeListener)
class _ALPNChooser(Protocol):
    """Sits inside TLS until the handshake is over, then hands the connection to the
    application protocol ALPN selected, and relays what TLS delivers to it."""

    _inner = None
    _closing = False

    def __init__(self, mux: MultiplexingFactory, addr):
        self._mux = mux
        self._addr = addr
        self._on_chosen = None

    def handshakeCompleted(self) -> None:
        self._choose()

    def _choose(self) -> None:
        negotiated = self.transport.negotiatedProtocol
        if negotiated == ALPN_PCNET:
            factory = self._mux.line_factory
        else:
            factory = self._mux.http_factory
        inner = factory.buildProtocol(self._addr)
        if self._on_chosen is not None:
            self._on_chosen()
        if inner is None:
            self._closing = True
            self.transport.loseConnection()
            return
        self._inner = inner
        # The TLS layer is the application protocol's transport, so HTTP sees a secure
        # request and the line protocol can read the peer's certificate.
        inner.makeConnection(self.transport)
        if IHandshakeListener.providedBy(inner):
            inner.handshakeCompleted()

    def dataReceived(self, data: bytes) -> None:
        if self._inner is None:
            if self._closing:
                return
            # Application data normally follows handshakeCompleted; be safe if it does not.
            self._choose()
            if self._inner is None:
                return
        self._inner.dataReceived(data)

    def connectionLost(self, reason) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connectionLost(reason)


@implementer(IProtocolNegotiationFactory)
class _ALPNChooserFactory(Factory):
    """What TLSMemoryBIOFactory wraps. It also advertises the ALPN names, so the listener
    works with any server TLS options, not only those from `server_tls_options`."""

    def __init__(self, mux: MultiplexingFactory):
        self._mux = mux

    def buildProtocol(self, addr) -> _ALPNChooser:
        return _ALPNChooser(self._mux, addr)

    def acceptableProtocols(self):
        return list(SERVER_ALPN)


class _PlainLog:
    """What stands in for a RateLimitedLog on a listener without a clock (tests, tools)."""

    def event(self, kind: str, fmt: str, **fields) -> bool:
        log.info(fmt, **fields)
        return True


#: Bytes a TLS connection may send while it waits for its handshake's turn (a ClientHello is
#: at most a few KiB; TLS records are at most 16 KiB).
_MAX_WAITING_BYTES = 64 * 1024


class _FirstByteSniffer(Protocol):
    """Waits for the first byte, then becomes a relay to TLS or to plain HTTP.

    A TLS connection's handshake starts when the listener's `StrangerWork` queue gets to it
    (at once, unless a flood of handshakes is being worked through); what arrives meanwhile is
    kept for it.
    """

    _inner = None
    _timer = None
    _waiting: list[bytes] | None = None
    _gone = False

    def __init__(self, mux: MultiplexingFactory, addr, ticket: str | None = None):
        self._mux = mux
        self._addr = addr
        self._ticket = ticket  # our slot in the connection caps, given back when we are gone

    def connectionMade(self) -> None:
        mux = self._mux
        if mux.clock is not None and mux.negotiation_timeout is not None:
            self._timer = mux.clock.callLater(mux.negotiation_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        if self._mux.handshakes is not None:
            self._mux.handshakes.add(self._drop)   # many time out together: take turns
        else:
            self._drop()

    def _drop(self) -> None:
        if self._gone:
            return
        self._mux.stranger_log.event(
            "negotiation_timeout",
            "connection from {peer} did not get as far as HTTP or pcnet/1 in {t:g} s; dropping",
            peer=self.transport.getPeer(),
            t=self._mux.negotiation_timeout,
        )
        self.transport.abortConnection()

    def _negotiated(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def dataReceived(self, data: bytes) -> None:
        inner = self._inner
        if inner is not None:
            inner.dataReceived(data)
            return
        if not data:
            return
        waiting = self._waiting
        if waiting is not None:
            waiting.append(data)
            if sum(map(len, waiting)) > _MAX_WAITING_BYTES:
                self.transport.abortConnection()
            return
        mux = self._mux
        if data[0] == _TLS_HANDSHAKE:
            if mux.handshakes is not None:
                self._waiting = [data]
                mux.handshakes.add(self._start_tls)
                return
            self._start_tls(data)
            return
        if mux.allow_plain:
            self._negotiated()
            inner = mux.http_factory.buildProtocol(self._addr)
        else:
            self._negotiated()
            if 0x41 <= data[0] <= 0x5A:  # an HTTP method: tell the human why
                self.transport.write(_PLAIN_REFUSED)
            self.transport.loseConnection()
            return
        self._relay_to(inner, data)

    def _start_tls(self, data: bytes | None = None) -> None:
        if self._gone:
            return
        if data is None:
            data, self._waiting = b"".join(self._waiting), None
        inner = self._mux._tls_factory.buildProtocol(self._addr)
        # The TLS wrapper's application protocol is a chooser; the timer runs on until it has
        # chosen, so a stalled handshake is dropped too.
        inner.wrappedProtocol._on_chosen = self._negotiated
        self._relay_to(inner, data)

    def _relay_to(self, inner, data: bytes) -> None:
        if inner is None:
            self.transport.loseConnection()
            return
        self._inner = inner
        inner.makeConnection(self.transport)
        inner.dataReceived(data)

    def connectionLost(self, reason) -> None:
        self._gone = True
        self._waiting = None
        self._negotiated()
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            self._mux.limits.release(ticket)
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connectionLost(reason)


class MultiplexingFactory(Factory):
    """The protocol factory for a server's listening port (ARCHITECTURE §2).

    - `http_factory`: the web site (a `twisted.web.server.Site`), for clear-text HTTP and for
      TLS connections that did not negotiate pcnet/1;
    - `line_factory`: pcnet/1 (a `LineServerFactory`), for TLS connections with ALPN `pcnet/1`;
    - `tls_options`: server TLS options (`pcnet.net.tls.server_tls_options`);
    - `allow_plain`: whether clear-text HTTP is served (True on 9191, False on 9192);
    - `clock` and `negotiation_timeout`: a connection that has not reached HTTP or pcnet/1
      (first byte, TLS handshake) within this many seconds is dropped. No clock, no limit.
    - `limits`: the `ConnectionLimits` (total and per source address) this port counts its
      connections in; share one between a server's ports. None: no caps.
    - `handshakes`: the `StrangerWork` queue TLS handshakes take turns in (share one between a
      server's ports); by default one of the port's own when there is a clock.

        site = MultiplexingFactory(Site(root), LineServerFactory(...), tls_options,
                                   allow_plain=True, clock=reactor)
        await endpoints.serverFromString(reactor, "tcp:9191").listen(site)
    """

    noisy = False

    def __init__(
        self,
        http_factory: IProtocolFactory,
        line_factory: IProtocolFactory,
        tls_options,
        *,
        allow_plain: bool,
        clock: IReactorTime | None = None,
        negotiation_timeout: float | None = 10.0,
        limits: ConnectionLimits | None = None,
        handshakes: StrangerWork | None = None,
    ):
        self.http_factory = http_factory
        self.line_factory = line_factory
        self.allow_plain = allow_plain
        self.clock = clock
        self.negotiation_timeout = negotiation_timeout
        self.limits = limits
        if handshakes is None and clock is not None:
            handshakes = StrangerWork(clock)
        self.handshakes = handshakes
        self.stranger_log = (RateLimitedLog(clock, log, level="info") if clock is not None
                             else _PlainLog())
        self._tls_factory = TLSMemoryBIOFactory(
            tls_options, False, _ALPNChooserFactory(self), clock=clock
        )

    def buildProtocol(self, addr) -> _FirstByteSniffer | None:
        limits = self.limits
        if limits is None:
            return _FirstByteSniffer(self, addr)
        ticket = limits.admit(addr)
        if ticket is None:
            return None  # the port closes the socket at once: nothing was built for it
        return _FirstByteSniffer(self, addr, ticket)

    # The inner factories never see a port of their own; pass start/stop on, so e.g. a Site
    # opens and closes its access log.
    def doStart(self) -> None:
        super().doStart()
        self.http_factory.doStart()
        self.line_factory.doStart()

    def doStop(self) -> None:
        self.line_factory.doStop()
        self.http_factory.doStop()
        super().doStop()
