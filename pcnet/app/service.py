"""The Application Server role as a Twisted service tree, assembled from `pcnet.app.pieces`.

    ApplicationServer (MultiService)
      store               StoreService: connects and applies migrations; stops last
      serving             StartAfter(store): nothing below starts before the schema is current
        connection-limits ConnectionGuard: open-files limit raised, caps fitted ([server])
        change-watcher    ChangeWatcher: other processes' writes -> the change bus
        quotas            TimerService, every [quotas] check_interval seconds
        hold-expiry       TimerService, every [jobs] expiry_check_interval seconds
        http              Listener [server] http: plain HTTP, HTTPS and pcnet/1
        tls               Listener [server] tls: HTTPS and pcnet/1

What the listeners serve is built once, in `__init__`, from the typed settings
(`pcnet.config.AppSettings`): the change bus (`bus`), the service layer (`service_layer`, a
`pcnet.app.services.Services`: the one write path, every write validated, audited and
published on the bus; its job service `jobs`, whose cache follows the bus), the quota
scheduler, the pcnet/1 operations for providers (thin adapters over the service layer) and the
node registry, one sign-in throttle, the metrics, the health report, the web root (`/`, `/api`,
`/api/health`, `/metrics`, the admin API at `/api/v1`), the HTTP site and the pcnet/1 server
factory. Each is one call of a piece, so another role (the Site Server) builds its own tree
from the same calls.

Start-up problems that can be seen before the reactor runs (a bad config, missing TLS files, an
unreachable database) are raised as `PcnetError` from `make_app_service`, so `twistd` prints one
line and exits 1. Problems found later (a migration failing, a port taken) are logged as one
line and stop the reactor.
"""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource

from pcnet import config as configlib
from pcnet.app import health as healthlib
from pcnet.app import pieces
from pcnet.app.events import ChangeBus
from pcnet.app.metrics import ServerMetrics
from pcnet.app.provider_ops import ProviderOps
from pcnet.app.quotas import QuotaScheduler
from pcnet.app.services import SCHEDULER, Services, ServiceSettings
from pcnet.app.throttle import SignInThrottle
from pcnet.app.watch import ChangeWatcher
from pcnet.errors import ConfigError, PcnetError, StoreUnavailable
from pcnet.net.line import Operations
from pcnet.net.tls import server_tls_options
from pcnet.store._address import describe_address, scrub

# Kept here for the callers that import it from this module.
with_backlog = pieces.with_backlog

ROLE = "app"


def read_tls(settings) -> object:
    """The server's TLS options from `[tls]` (a `ConfigError` naming the key if a file is missing)."""

    def read(key: str) -> bytes:
        path = getattr(settings.tls, key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{settings.path}: [tls] {key}: {path} does not exist (run `pcnet init`)") from None
        except OSError as e:
            raise ConfigError(f"{settings.path}: [tls] {key}: cannot read {path}: {e.strerror}") from None

    return server_tls_options(read("cert"), read("key"), read("ca_cert"))


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


def read_metrics_token(settings) -> str | None:
    """The bearer token of `[metrics] token_file`, or None (a `ConfigError` if unreadable)."""
    path = settings.metrics.token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{settings.path}: [metrics] token_file: cannot read {path}: "
                          f"{e.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"{settings.path}: [metrics] token_file: {path} must hold a token of "
                          "at least 16 characters")
    if path.stat().st_mode & 0o077:
        Logger(namespace="pcnet.app").warn(
            "[metrics] token_file {path} may be read by other users; make it mode 0600",
            path=str(path))
    return token


class ApplicationServer(MultiService):
    """The Application Server (see the module's doc). `settings` is an `AppSettings` (a
    validated `Config` is typed on the way in); `tls_options` may be None only for tests that
    never start the listeners."""

    log = Logger()

    def __init__(self, settings, reactor, store, *, tls_options, metrics_token: str | None = None):
        super().__init__()
        if isinstance(settings, configlib.Config):
            settings = configlib.app_settings(settings)
        self.settings = s = settings
        self.reactor = reactor
        self.store = store
        self.tls_options = tls_options
        self.ready: Deferred = Deferred()

        # What the listeners serve ----------------------------------------------------------
        from pcnet.web.api import API_PREFIX, AdminApi

        self.metrics = ServerMetrics(
            role=ROLE, node=s.server.name,
            routes=[(r.method, API_PREFIX + r.path) for r in AdminApi.routes()]
            + [("GET", p) for p in ("/", "/api", "/api/health", "/metrics")])
        self.metrics.watch_store(store)
        self.bus = ChangeBus()
        self.bus.subscribe(self.metrics.change_event)
        # The one write path: every write of this server goes through these services, which
        # publish a change event on the bus after each commit (the job service's cache follows
        # the bus, and so hears the watcher's events of other processes' writes too).
        self.service_layer = Services(store, reactor, self.bus,
                                      settings=ServiceSettings.from_config(s), threads=reactor,
                                      metrics=self.metrics)
        self.jobs = self.service_layer.jobs
        self.quotas = QuotaScheduler(self.service_layer)
        self.line_ops = Operations()
        self.provider_ops = ProviderOps(self.service_layer)
        self.provider_ops.register(self.line_ops)
        self.node_registry = self.service_layer.nodes.registry(
            auto_approve_networks=list(s.protocol.auto_approve_networks))
        self.signin = SignInThrottle(reactor, s.signin)
        self.guard = pieces.ConnectionGuard(s.server, reactor,
                                            hello_timeout=s.protocol.line.auth_timeout,
                                            request_timeout=s.http.request_timeout)
        self.connection_limits = self.guard.limits
        self.stranger_work = self.guard.stranger_work
        self.line = pieces.line_server(s.protocol, self.line_ops, self.node_registry,
                                       reactor=reactor, server_name=s.server.name,
                                       stranger_work=self.stranger_work)
        # Pushes to nodes (release, cancel, retry) and closing a rejected or deleted node's
        # connection go through the sessions of this factory; health and metrics count them.
        self.service_layer.sessions.attach(self.line)
        self.metrics.watch_links(self.service_layer.sessions)
        self.watcher = ChangeWatcher(store, self.bus, reactor, interval=s.database.watch_interval)
        self.health = healthlib.Health(role=ROLE, node=s.server.name, clock=reactor)
        self.health.add("database", healthlib.database_check(store, clock=reactor))
        self.health.add("links", healthlib.links_check(self.service_layer.sessions),
                        critical=False)
        self.health.add("changes", self.watcher.state, critical=False)
        self.admin_api = AdminApi(self.service_layer, reactor, signin=self.signin)
        self.root = self._web_root(metrics_token)
        self.site = pieces.http_site(s.http, self.root, reactor=reactor,
                                     stranger_work=self.stranger_work, metrics=self.metrics)

        # The tree ------------------------------------------------------------------------------
        self.store_service = pieces.StoreService(store)
        self.store_service.setServiceParent(self)
        self.serving = pieces.StartAfter(self.store_service.when_started, self._start_failed)
        self.serving.setServiceParent(self)
        self.guard.setServiceParent(self.serving)
        self.watcher.setServiceParent(self.serving)
        pieces.timer(s.quota_check_interval, self.quotas.run_due, clock=reactor, name="quotas",
                     what="applying quotas").setServiceParent(self.serving)
        pieces.timer(s.jobs.expiry_check_interval, self._expire_held_jobs, clock=reactor,
                     name="hold-expiry", what="expiring held jobs").setServiceParent(self.serving)
        self.listeners = pieces.listeners(s, self._listener_factory, reactor=reactor,
                                          on_failure=self._start_failed)
        for listener in self.listeners:
            listener.setServiceParent(self.serving)

    def _expire_held_jobs(self) -> Deferred:
        return Deferred.fromCoroutine(self.service_layer.held_jobs.expire_due(SCHEDULER))

    # --- what the listeners serve ---------------------------------------------------------------

    def _web_root(self, metrics_token) -> Resource:
        from pcnet.web.status import status_root

        root = status_root(health=self.health, metrics=self.metrics, role=ROLE,
                           allow_networks=self.settings.metrics.allow_networks, token=metrics_token)
        self.admin_api.mount(root)
        return root

    def web_root(self) -> Resource:
        """The web root: `/`, `/api`, `/api/health`, `/metrics` and the admin API at `/api/v1`."""
        return self.root

    def line_factory(self):
        """The pcnet/1 server factory (providers, site servers), shared by both listeners."""
        return self.line

    def _listener_factory(self, allow_plain: bool):
        return pieces.multiplexing_factory(
            self.site, self.line, self.tls_options, self.guard, reactor=self.reactor,
            handshake_timeout=self.settings.server.handshake_timeout, allow_plain=allow_plain)

    @property
    def ports(self) -> list:
        """The listening ports (for tests and the start-up message)."""
        return [listener.port for listener in self.listeners if listener.port is not None]

    # --- life cycle -------------------------------------------------------------------------------

    def startService(self):
        self.health.state = healthlib.STARTING
        super().startService()
        self.store_service.when_started().addCallbacks(self._serving, lambda f: None)

    def _serving(self, _):
        d = pieces.all_listening(self.listeners)
        d.addCallback(self._listening)
        return d

    def _listening(self, _):
        if not self.running or self.ready.called:
            return
        if self.store_service.applied:
            self.log.info("applied migrations {versions}",
                          versions=", ".join(str(v) for v in self.store_service.applied))
        host, http = self.settings.server.public_host, self.listeners[0].port.getHost()
        self.log.info(
            "pcnet admin API: http://{host}:{port}/api/v1 (send 'Authorization: Bearer TOKEN' with the "
            "token `pcnet init` printed, or make one: pcnet token create --config {config} NAME)",
            host=host, port=getattr(http, "port", "?"), config=self.settings.path)
        self.health.state = healthlib.OK
        _settle_garbage_collector()
        self.ready.callback(self)

    def _start_failed(self, failure):
        if isinstance(failure, Exception):
            from twisted.python.failure import Failure

            failure = Failure(failure)
        self.health.state = healthlib.UNAVAILABLE
        if failure.check(PcnetError):
            self.log.critical("pcnet: cannot start: {message}", message=pieces.one_line(failure))
        else:
            self.log.failure("pcnet: cannot start", failure)
        if not self.ready.called:
            self.ready.errback(failure)
            self.ready.addErrback(lambda f: None)
        if getattr(self.reactor, "running", False):
            self.reactor.stop()

    def stopService(self):
        self.health.state = healthlib.STOPPING
        return super().stopService()


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

    settings = configlib.load_settings(config_path)
    tls_options = read_tls(settings)
    token = read_metrics_token(settings)
    if store is None:
        check_database_reachable(settings.database.url)
        store = open_store(settings.database.url, reactor=reactor,
                           pool_size=settings.database.pool_size)
    return ApplicationServer(settings, reactor, store, tls_options=tls_options,
                             metrics_token=token)
