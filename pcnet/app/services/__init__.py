"""The service layer: the one write path of the Application Server (and, later, of the Site
Server).

Every write — the admin API, the `pcnet` commands (CSV imports included), the quota scheduler,
held-job expiry, the pcnet/1 operations, and later the web console, the XML-RPC API, directory
sync and device drivers — goes through a method of these services, which

1. takes typed values and checks each once, by the rules of `pcnet.domain.rules`;
2. checks access: the `Actor` it is given (who, from where) may do this;
3. writes through the store (`IStore`), an administrative change together with its audit row
   in one transaction (who, from where, when, what, the values before and after, no secret);
4. publishes `ChangeEvent`s on the bus (`pcnet.app.events`) once the write has committed, so
   that every cache (the job path's `JobDirectory`, later replica feeds and live views) forgets
   what changed.

No other code writes to the store (tests/app/test_write_path.py checks it). Reads may go
through the services too (`users.get`, `printers.list`, ...), which is how adapters find
records by id or name.

    settings = pcnet.config.load_settings(path)        # the typed AppSettings, read once
    services = Services(store, reactor, bus, settings=ServiceSettings.from_config(settings),
                        threads=reactor)
    user = await services.users.create(Actor.for_cli(sys.argv[1:]), "ann", full_name="Ann")
    decision, job = await services.jobs.submit(request, Actor.for_node("provider", "print01"))

Service methods are coroutines (the job service's hot-path methods return Deferreds), and
raise `pcnet.errors.PcnetError`s: `InvalidInput` naming the field, `NotFound`, `Conflict`,
`Forbidden`, `InsufficientFunds`, `JobDenied`, `ProviderOffline`.
"""

from __future__ import annotations

from pcnet.app.events import ChangeBus
from pcnet.app.services._base import Context, ServiceSettings
from pcnet.app.services.accounts import AccountService
from pcnet.app.services.actor import SCHEDULER, SYSTEM, Actor, require_admin
from pcnet.app.services.audit import AuditService
from pcnet.app.services.groups import GroupService
from pcnet.app.services.held_jobs import HeldJobService, ProviderOffline
from pcnet.app.services.jobs import JobService
from pcnet.app.services.nodes import NodeService, NodeSessions, StoreNodeRegistry
from pcnet.app.services.offline_policy import OfflinePolicyService
from pcnet.app.services.printers import PrinterService
from pcnet.app.services.quarantine import QuarantineService
from pcnet.app.services.quotas import QuotaService
from pcnet.app.services.tokens import TokenRefused, TokenService
from pcnet.app.services.users import UserService

__all__ = [
    "SCHEDULER",
    "SYSTEM",
    "Actor",
    "ProviderOffline",
    "NodeSessions",
    "ServiceSettings",
    "Services",
    "StoreNodeRegistry",
    "TokenRefused",
    "require_admin",
]


class Services:
    """The services of one server, over one store:

    `users`, `groups`, `accounts`, `printers`, `quotas`, `tokens`, `nodes`, `held_jobs`,
    `jobs`, `offline_policy`, `quarantine`, `audit`; `sessions` (the live pcnet/1 sessions of
    every listener: `sessions.attach(line_server_factory)`; `nodes.connected()` says who is
    connected, for health and metrics), `bus` (the change events).

    `clock` is an `IReactorTime` (the reactor, or a `task.Clock` in tests); `bus` a
    `ChangeBus` (a new one if None); `settings` the `ServiceSettings` (read once from the
    configuration); `threads` an `IReactorThreads` for password hashing off the reactor thread
    (None: hash in place, as the `pcnet` commands and tests do); `sessions` the
    `INodeSessions` (a new `NodeSessions` if None); `metrics` where the job service counts
    its decisions (`timer()`, `job_decided(path, action, charged, seconds)`), or None.
    """

    def __init__(self, store, clock, bus: ChangeBus | None = None, *,
                 settings: ServiceSettings | None = None, threads=None, sessions=None,
                 metrics=None):
        self.ctx = Context(store, clock, bus, settings, threads, metrics)
        self.store = store
        self.clock = clock
        self.bus = self.ctx.bus
        self.settings = self.ctx.settings
        self.sessions = sessions if sessions is not None else NodeSessions()
        self.users = UserService(self.ctx, self)
        self.groups = GroupService(self.ctx, self)
        self.accounts = AccountService(self.ctx, self)
        self.printers = PrinterService(self.ctx, self)
        self.quotas = QuotaService(self.ctx, self)
        self.tokens = TokenService(self.ctx, self)
        self.nodes = NodeService(self.ctx, self, self.sessions)
        self.jobs = JobService(self.ctx, self)
        self.held_jobs = HeldJobService(self.ctx, self, self.sessions)
        self.quarantine = QuarantineService(self.ctx, self, self.sessions)
        self.offline_policy = OfflinePolicyService(self.ctx, self)
        self.audit = AuditService(self.ctx, self)
