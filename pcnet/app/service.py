"""The Application Server role as a Twisted service tree.

    ApplicationServer (MultiService)
      the store            started first; nothing listens until migrations are applied
      quota scheduler      TimerService, every [quotas] check_interval seconds
      held-job expiry      TimerService, every [jobs] expiry_check_interval seconds
      services             the one write path (pcnet/app/services): every write validated,
                           audited and published on the change bus
      provider operations  pcnet/1 ops for Print Providers (pcnet/app/provider_ops.py), with
                           nodes approved through the store (services.nodes.registry)
      listeners            [server] http (plain HTTP + TLS) and [server] tls (TLS only), each a
                           MultiplexingFactory: HTTP -> the web root (admin JSON API at /api/v1),
                           TLS with ALPN pcnet/1 -> the line protocol (providers, site servers);
                           both count their connections in one ConnectionLimits ([server]
                           max_connections*), and every password check goes through one
                           SignInThrottle ([signin])

At start-up the open-files soft limit is raised to the hard limit (logged), so that the
connection caps, not the descriptor limit, decide when connections are refused.

Start-up problems that can be seen before the reactor runs (a bad config, missing TLS files, an
unreachable database) are raised as `PcnetError` from `make_app_service`, so `twistd` prints one
line and exits 1. Problems found later (a migration failing) are logged and stop the reactor.
"""

from __future__ import annotations

import re

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource

from pcnet import config as configlib
from pcnet.app.events import ChangeBus
from pcnet.app.provider_ops import ProviderOps
from pcnet.app.quotas import QuotaScheduler, quota_service
from pcnet.app.services import SCHEDULER, Services, ServiceSettings
from pcnet.app.throttle import SignInPolicy, SignInThrottle
from pcnet.errors import ConfigError, PcnetError, StoreUnavailable
from pcnet.net.limits import ConnectionLimits, StrangerWork, raise_open_file_limit
from pcnet.net.line import LineConfig, LineServerFactory, Operations
from pcnet.net.listener import MultiplexingFactory
from pcnet.net.tls import server_tls_options
from pcnet.store._address import describe_address, scrub
from pcnet.web.site import PcnetSite


def _read(cfg, key: str) -> bytes:
    path = cfg.data_path(cfg["tls"][key])
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{cfg.path}: [tls] {key}: {path} does not exist (run `pcnet init`)") from None
    except OSError as e:
        raise ConfigError(f"{cfg.path}: [tls] {key}: cannot read {path}: {e.strerror}") from None


def with_backlog(description: str, backlog: int) -> str:
    """A tcp:/tcp6: endpoint string with `backlog=` added unless it sets one already."""
    kind = description.split(":", 1)[0]
    if kind not in ("tcp", "tcp6") or re.search(r"(^|:)backlog=", description):
        return description
    return f"{description}:backlog={backlog}"


def check_database_reachable(url: str) -> None:
    """Fail fast, before the reactor runs, when the database cannot be reached at all."""
    if url.startswith("sqlite:"):
        import sqlite3

        path = url[len("sqlite:///") - 1:] if url.startswith("sqlite:///") else None
        if path:
            from pcnet.store._sqlite import private_database_files

            try:
                private_database_files(path)  # before sqlite3 would create it world-readable
                sqlite3.connect(path).close()
            except OSError as e:
                raise StoreUnavailable(f"cannot open SQLite database {path}: {e.strerror}") from None
            except sqlite3.Error as e:
                raise StoreUnavailable(f"cannot open SQLite database {path}: {e}") from None
        return
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=5).close()
    except psycopg2.Error as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreUnavailable(
            f"cannot reach PostgreSQL at {describe_address(url)}: {scrub(first_line, url)}") from None


class ApplicationServer(MultiService):
    """The Application Server: store first, then the quota timer and the listeners."""

    log = Logger()

    def __init__(self, cfg, reactor, store, *, tls_options):
        super().__init__()
        self.cfg = cfg
        self.reactor = reactor
        self.store = store
        # The one write path: every write of this server goes through these services, which
        # publish a change event on the bus after each commit.
        self.bus = ChangeBus()
        self.service_layer = Services(store, reactor, self.bus, settings=ServiceSettings.from_config(cfg),
                                 threads=reactor)
        self.jobs = self.service_layer.jobs
        self.quotas = QuotaScheduler(self.service_layer)
        self.tls_options = tls_options
        self.line_ops = Operations()
        self.provider_ops = ProviderOps(self.service_layer)
        self.provider_ops.register(self.line_ops)
        self.node_registry = self.service_layer.nodes.registry(
            auto_approve_networks=cfg["protocol"]["auto_approve_networks"])
        srv, sign = cfg["server"], cfg["signin"]
        self.connection_limits = ConnectionLimits(
            max_total=srv["max_connections"], max_per_source=srv["max_connections_per_address"],
            clock=reactor)
        # TLS handshakes and strangers' deadline closes take turns with everything else.
        self.stranger_work = StrangerWork(reactor)
        # One throttle for every way in that checks a password (the admin API's /me today).
        self.signin = SignInThrottle(reactor, SignInPolicy(
            hashes_per_second=float(sign["hashes_per_second"]),
            concurrent_hashes=sign["concurrent_hashes"],
            address_failures=sign["address_failures"], user_failures=sign["user_failures"],
            failure_window=float(sign["failure_window"]), lockout=float(sign["lockout"]),
            max_tracked=sign["max_tracked"]))
        self.ports = []
        self.ready: Deferred = Deferred()
        self._starting: Deferred | None = None

    # The web root: the admin API and, later, the admin and user web.
    def web_root(self) -> Resource:
        from pcnet.web.api import AdminApi

        root = Resource()
        self.admin_api = AdminApi(self.service_layer, self.reactor, signin=self.signin)
        self.admin_api.mount(root)
        return root

    def line_factory(self) -> LineServerFactory:
        p = self.cfg["protocol"]
        line_config = LineConfig(max_line_length=p["max_line_length"],
                                 heartbeat_interval=float(p["heartbeat_interval"]),
                                 missed_beats=p["missed_beats"],
                                 hello_line_length=p["hello_line_length"],
                                 auth_timeout=float(p["auth_timeout"]))
        factory = LineServerFactory(self.line_ops, self.node_registry, clock=self.reactor,
                                    config=line_config, server_name=self.cfg["server"]["name"])
        factory.stranger_work = self.stranger_work
        # Pushes to nodes (release, cancel, retry) and closing a rejected or deleted node's
        # connection go through the sessions of this factory.
        self.service_layer.sessions.attach(factory)
        return factory

    def startService(self):
        super().startService()
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addErrback(self._start_failed)

    async def _start(self):
        await self.store.start()
        quota_service(self.quotas, float(self.cfg["quotas"]["check_interval"])).setServiceParent(self)
        expiry = TimerService(float(self.cfg["jobs"]["expiry_check_interval"]), self._expire_held_jobs)
        expiry.clock = self.reactor
        expiry.setServiceParent(self)
        self._fit_open_files()
        h = self.cfg["http"]
        site = PcnetSite(self.web_root(), reactor=self.reactor,
                         max_request_body=h["max_request_body"],
                         max_request_bodies=h["max_request_bodies"],
                         request_timeout=float(h["request_timeout"]),
                         idle_timeout=float(h["idle_timeout"]), max_headers=h["max_headers"],
                         max_header_bytes=h["max_header_bytes"])
        site.stranger_work = self.stranger_work
        line = self.line_factory()
        for key, allow_plain in (("http", True), ("tls", False)):
            description = with_backlog(self.cfg["server"][key], self.cfg["server"]["listen_backlog"])
            factory = MultiplexingFactory(
                site, line, self.tls_options, allow_plain=allow_plain, clock=self.reactor,
                negotiation_timeout=float(self.cfg["server"]["handshake_timeout"]),
                limits=self.connection_limits, handshakes=self.stranger_work)
            try:
                port = await endpoints.serverFromString(self.reactor, description).listen(factory)
            except Exception as e:
                raise ConfigError(f"{self.cfg.path}: [server] {key}: cannot listen on {description}: {e}") from None
            self.ports.append(port)
            address = port.getHost()
            self.log.info("pcnet app listening on {what} port {port} ({kind})", what=key,
                          port=getattr(address, "port", address),
                          kind="HTTP, HTTPS and pcnet/1" if allow_plain else "HTTPS and pcnet/1")
        host, http = self.cfg["server"]["public_host"], self.ports[0].getHost()
        self.log.info(
            "pcnet admin API: http://{host}:{port}/api/v1 (send 'Authorization: Bearer TOKEN' with the "
            "token `pcnet init` printed, or make one: pcnet token create --config {config} NAME)",
            host=host, port=getattr(http, "port", "?"), config=self.cfg.path)
        _settle_garbage_collector()
        self.ready.callback(self)

    def _fit_open_files(self) -> None:
        before, after, hard = raise_open_file_limit()
        if after != before:
            self.log.info("open files limit raised from {before} to {after} (the hard limit)",
                          before=before, after=after)
        limits = self.connection_limits
        configured = limits.max_total
        if limits.fit_to_descriptors(after):
            self.log.warn(
                "[server] max_connections {configured} does not fit in the open files limit "
                "{limit} (hard limit {hard}); holding at most {cap} connections",
                configured=configured, limit=after, hard=hard, cap=limits.max_total)
        self.log.info("connection caps: {total} in all, {per} per address; connections without "
                      "an approved pcnet/1 hello or a complete HTTP request are closed after "
                      "{handshake:g} s (handshake) + {hello:g} s (hello) / {request:g} s (request)",
                      total=limits.max_total, per=limits.max_per_source,
                      handshake=float(self.cfg["server"]["handshake_timeout"]),
                      hello=float(self.cfg["protocol"]["auth_timeout"]),
                      request=float(self.cfg["http"]["request_timeout"]))

    def _expire_held_jobs(self):
        return Deferred.fromCoroutine(self.service_layer.held_jobs.expire_due(SCHEDULER)).addErrback(
            lambda f: self.log.failure("expiring held jobs failed", f))

    def _start_failed(self, failure):
        if failure.check(PcnetError):
            self.log.critical("pcnet: cannot start: {message}", message=failure.value.message)
        else:
            self.log.failure("pcnet: cannot start", failure)
        if not self.ready.called:
            self.ready.errback(failure)
        if self.reactor.running:
            self.reactor.stop()

    async def _stop(self):
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        for port in self.ports:
            await port.stopListening()
        self.ports = []
        await super().stopService()
        await self.store.stop()

    def stopService(self):
        return Deferred.fromCoroutine(self._stop())


def _settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector's pauses short under many connections.

    Everything made at start-up (modules, the schema, the routes) lives as long as the process:
    `gc.freeze()` takes it out of every later full collection, which otherwise scans it again
    and again (a quarter of a second each, measured with 8,000 connections open). Young
    collections run every 10,000 allocations instead of 700, so connection churn triggers
    fewer of them (each still takes about a millisecond).
    """
    import gc

    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(10_000, older, oldest)


def make_app_service(config_path, reactor, *, store=None) -> ApplicationServer:
    """Build the Application Server from its configuration file (see etc/pcnet.toml)."""
    from pcnet.store import open_store

    cfg = configlib.load(config_path)
    tls_options = server_tls_options(_read(cfg, "cert"), _read(cfg, "key"), _read(cfg, "ca_cert"))
    if store is None:
        check_database_reachable(cfg.database_url)
        store = open_store(cfg.database_url, reactor=reactor, pool_size=cfg["database"]["pool_size"])
    return ApplicationServer(cfg, reactor, store, tls_options=tls_options)
