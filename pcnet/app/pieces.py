"""The pieces a pcnet server role is assembled from, each built by one small function or class.

The Application Server (`pcnet.app.service`) is one assembly of them; the Site Server (issue 8)
is another, from the same pieces, with none of this copied:

- `StoreService`: starts the store (migrations) and stops it last; `StartAfter` is a
  `MultiService` whose children start only once the store is ready, so nothing listens, ticks or
  watches before the schema is current;
- `ConnectionGuard`: one set of connection caps (`ConnectionLimits`) for all of a server's
  listeners and one `StrangerWork` queue; at start it raises the open-files limit and fits the
  caps into it;
- `line_server`: the pcnet/1 server factory from `[protocol]`;
- `http_site`: the `PcnetSite` from `[http]` (deadlines, size limits, the redacting access log),
  counting requests in the server's metrics;
- `Listener`: one `[server]` endpoint as a `StreamServerEndpointService`; a port that cannot be
  opened is reported as one line naming the file and key;
- `listeners`: the two listeners of `[server] http` (plain HTTP and TLS) and `[server] tls`;
- `timer`: a `TimerService` on the server's clock whose failures are logged, never raised.

Every function takes the typed settings section it needs (`pcnet.config.AppSettings`), never the
raw configuration.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger

from pcnet.errors import ConfigError, PcnetError
from pcnet.net.limits import ConnectionLimits, StrangerWork, raise_open_file_limit
from pcnet.net.line import LineServerFactory
from pcnet.net.listener import MultiplexingFactory
from pcnet.web.site import PcnetSite

log = Logger(namespace="pcnet.app.pieces")


def with_backlog(description: str, backlog: int) -> str:
    """A tcp:/tcp6: endpoint string with `backlog=` added unless it sets one already."""
    kind = description.split(":", 1)[0]
    if kind not in ("tcp", "tcp6") or re.search(r"(^|:)backlog=", description):
        return description
    return f"{description}:backlog={backlog}"


# --- the store --------------------------------------------------------------------------------


class StoreService(Service):
    """Starts the store (connects, applies migrations) and stops it when the server stops.

    Put it first in the tree, and what needs the store in a `StartAfter(store_service)`: those
    start once `when_started()` fires, and stop before the store closes."""

    name = "store"

    def __init__(self, store):
        self.store = store
        self.applied: list[int] = []
        self._starting: Deferred | None = None
        self._waiters: list[Deferred] = []
        self._outcome = None   # None while starting; True, or the Failure

    def startService(self):
        super().startService()
        self._outcome = None
        self._starting = Deferred.fromCoroutine(self._start())

    async def _start(self):
        try:
            self.applied = list(await self.store.start() or [])
        except BaseException:
            from twisted.python.failure import Failure

            self._settle(Failure())
        else:
            self._settle(True)

    def _settle(self, outcome) -> None:
        self._outcome = outcome
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if outcome is True:
                d.callback(self.store)
            else:
                d.errback(outcome)

    def when_started(self) -> Deferred:
        """Fires with the store once it is started (fails as its start failed)."""
        d = Deferred()
        if self._outcome is True:
            d.callback(self.store)
        elif self._outcome is not None:
            d.errback(self._outcome)
        else:
            self._waiters.append(d)
        return d

    async def _stop(self):
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        await self.store.stop()

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


class StartAfter(MultiService):
    """A `MultiService` whose children start when `ready()` fires (the store is started), not
    when the parent starts. If `ready()` fails, `on_failure(failure)` is told and nothing starts.

    Children listen in `startService` only: `privilegedStartService` is not passed on, since a
    listener must not open its port before the schema is current."""

    def __init__(self, ready: Callable[[], Deferred], on_failure: Callable, name: str = "serving"):
        super().__init__()
        self.setName(name)
        self._ready = ready
        self._on_failure = on_failure
        self._waiting: Deferred | None = None
        self.children_started = False

    def privilegedStartService(self):
        Service.privilegedStartService(self)

    def startService(self):
        Service.startService(self)
        self._waiting = self._ready()
        self._waiting.addCallbacks(self._go, self._failed)

    def _go(self, _):
        self._waiting = None
        if self.running:
            self.children_started = True
            for service in self:
                service.startService()

    def _failed(self, failure):
        self._waiting = None
        if not failure.check(CancelledError):
            self._on_failure(failure)

    def stopService(self):
        if self._waiting is not None:
            self._waiting.cancel()
        if not self.children_started:
            return Service.stopService(self)
        self.children_started = False
        return MultiService.stopService(self)


# --- connections --------------------------------------------------------------------------------


class ConnectionGuard(Service):
    """One `ConnectionLimits` for all of a server's listeners (`[server] max_connections*`) and
    one `StrangerWork` queue for TLS handshakes and deadline closes. Started before the
    listeners: it raises the open-files soft limit to the hard limit (logged) and lowers the
    total cap to fit, so that the caps, not the descriptor limit, decide what is refused."""

    name = "connection-limits"

    def __init__(self, server, reactor, *, hello_timeout: float, request_timeout: float):
        self.server = server
        self.limits = ConnectionLimits(max_total=server.max_connections,
                                       max_per_source=server.max_connections_per_address,
                                       clock=reactor)
        self.stranger_work = StrangerWork(reactor)
        self._hello_timeout = hello_timeout
        self._request_timeout = request_timeout

    def startService(self):
        super().startService()
        before, after, hard = raise_open_file_limit()
        if after != before:
            log.info("open files limit raised from {before} to {after} (the hard limit)",
                     before=before, after=after)
        limits = self.limits
        configured = limits.max_total
        if limits.fit_to_descriptors(after):
            log.warn("[server] max_connections {configured} does not fit in the open files limit "
                     "{limit} (hard limit {hard}); holding at most {cap} connections",
                     configured=configured, limit=after, hard=hard, cap=limits.max_total)
        log.info("connection caps: {total} in all, {per} per address; connections without "
                 "an approved pcnet/1 hello or a complete HTTP request are closed after "
                 "{handshake:g} s (handshake) + {hello:g} s (hello) / {request:g} s (request)",
                 total=limits.max_total, per=limits.max_per_source,
                 handshake=self.server.handshake_timeout, hello=self._hello_timeout,
                 request=self._request_timeout)


def line_server(protocol, ops, registry, *, reactor, server_name: str,
                stranger_work: StrangerWork | None = None) -> LineServerFactory:
    """The pcnet/1 server end from `[protocol]` (a `ProtocolSettings`)."""
    factory = LineServerFactory(ops, registry, clock=reactor, config=protocol.line,
                                server_name=server_name)
    if stranger_work is not None:
        factory.stranger_work = stranger_work
    return factory


def http_site(http, root, *, reactor, stranger_work: StrangerWork | None = None,
              metrics=None) -> PcnetSite:
    """The HTTP site from `[http]` (an `HttpSettings`) serving `root`; every finished request
    is counted in `metrics` (a `pcnet.app.metrics.ServerMetrics`), if given."""
    site = PcnetSite(root, reactor=reactor, max_request_body=http.max_request_body,
                     max_request_bodies=http.max_request_bodies,
                     request_timeout=http.request_timeout, idle_timeout=http.idle_timeout,
                     max_headers=http.max_headers, max_header_bytes=http.max_header_bytes)
    if stranger_work is not None:
        site.stranger_work = stranger_work
    if metrics is not None:
        site.count_request = metrics.http_request
    return site


# --- listeners ----------------------------------------------------------------------------------


class Listener(StreamServerEndpointService):
    """One listening endpoint of the configuration, as a service.

    `make_factory()` builds the protocol factory when the service starts (its TLS options are
    only needed then). `where` names the file and key for messages ("pcnet.toml: [server]
    http"). A port that cannot be opened is `on_failure(ConfigError)`, one line, never a
    traceback. `listening` fires with the port once it listens (never fails)."""

    def __init__(self, reactor, description: str, make_factory: Callable, *, name: str,
                 where: str, on_failure: Callable, describe: str = ""):
        try:
            endpoint = endpoints.serverFromString(reactor, description)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{where}: {description!r} is not a listening endpoint: {e}") from None
        super().__init__(endpoint, None)
        self.setName(name)
        self.description = description
        self.where = where
        self.describe = describe or name
        self._make_factory = make_factory
        self._on_failure = on_failure
        self.port = None
        self.listening: Deferred = Deferred()

    def privilegedStartService(self):
        Service.privilegedStartService(self)
        if self.factory is None:
            self.factory = self._make_factory()
        self._waitingForPort = self.endpoint.listen(self.factory)
        self._waitingForPort.addCallbacks(self._listening, self._failed)

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        log.info("listening on {what} port {port} ({kind})", what=self.name,
                 port=getattr(address, "port", address), kind=self.describe)
        if not self.listening.called:
            self.listening.callback(port)
        return port

    def _failed(self, failure):
        if not failure.check(CancelledError):
            self._on_failure(ConfigError(
                f"{self.where}: cannot listen on {self.description}: {failure.getErrorMessage()}"))
        return None

    def stopService(self):
        d = super().stopService()
        self._waitingForPort = None
        self.port = None
        self.listening = Deferred()
        return d


def listeners(settings, make_factory: Callable[[bool], object], *, reactor,
              on_failure: Callable) -> list[Listener]:
    """The server's two listeners: `[server] http` (plain HTTP, HTTPS and pcnet/1, told apart by
    the first byte) and `[server] tls` (HTTPS and pcnet/1). `make_factory(allow_plain)` builds
    each one's factory when it starts."""
    server = settings.server
    out = []
    for key, allow_plain in (("http", True), ("tls", False)):
        out.append(Listener(
            reactor, with_backlog(getattr(server, key), server.listen_backlog),
            lambda allow_plain=allow_plain: make_factory(allow_plain), name=key,
            where=f"{settings.path or '<config>'}: [server] {key}", on_failure=on_failure,
            describe="HTTP, HTTPS and pcnet/1" if allow_plain else "HTTPS and pcnet/1"))
    return out


def multiplexing_factory(site, line, tls_options, guard: ConnectionGuard, *, reactor,
                         handshake_timeout: float, allow_plain: bool) -> MultiplexingFactory:
    """What one listener serves: HTTP to `site`, pcnet/1 (TLS with ALPN) to `line`, all counted in
    `guard`'s caps, handshakes taking turns in its queue."""
    return MultiplexingFactory(site, line, tls_options, allow_plain=allow_plain, clock=reactor,
                               negotiation_timeout=handshake_timeout, limits=guard.limits,
                               handshakes=guard.stranger_work)


def all_listening(services) -> Deferred:
    """Fires when every `Listener` among `services` listens."""
    return DeferredList([s.listening for s in services if isinstance(s, Listener)])


# --- timers ---------------------------------------------------------------------------------------


def timer(interval: float, work: Callable[[], object], *, clock, name: str,
          what: str) -> TimerService:
    """`work()` every `interval` seconds (and at start) on `clock`; a failure is logged as
    "`what` failed", and the next tick comes as usual."""

    def tick():
        from twisted.internet.defer import maybeDeferred

        return maybeDeferred(work).addErrback(lambda f: log.failure("{what} failed", f, what=what))

    service = TimerService(interval, tick)
    service.clock = clock
    service.setName(name)
    return service


def one_line(failure) -> str:
    """What a start-up failure says in one line: a PcnetError's message, else its repr."""
    if failure.check(PcnetError):
        return failure.value.message
    return failure.getErrorMessage()
