"""What every service shares: the store, the clock, the change bus, the settings, and the
habits of a write (check, write with its audit row, then publish)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from twisted.internet.threads import deferToThreadPool

from pcnet.app.events import ChangeBus, ChangeEvent
from pcnet.app.jobs import utcnow
from pcnet.app.services._audit import entry_maker
from pcnet.domain.decision import DEFAULT_LIMITS
from pcnet.domain.model import DEFAULT_PAPER_SIZE, JobLimits, OfflinePolicy
from pcnet.domain.secrets import hash_secret


@dataclass(frozen=True)
class ServiceSettings:
    """The settings the services read, once, from the server's configuration.

    - `job_limits`: `[jobs] max_copies`, `max_pages`, `max_total_pages`;
    - `offline_policy`: `[jobs] offline_policy`, what is charged for a job a Print Provider
      printed offline that breaks the rules;
    - `hold_expiry_hours`: `[jobs] hold_expiry_hours`;
    - `paper_size`: `[jobs] paper_size`, the paper size of a job that does not say.
    """

    job_limits: JobLimits = DEFAULT_LIMITS
    offline_policy: OfflinePolicy = OfflinePolicy.FLAG
    hold_expiry_hours: float = 24.0
    paper_size: str = DEFAULT_PAPER_SIZE

    @classmethod
    def from_config(cls, settings) -> ServiceSettings:
        """From the server's typed settings (`pcnet.config.AppSettings`, read once by
        `pcnet.config.load_settings`): its `[jobs]` section."""
        jobs = settings.jobs
        return cls(job_limits=jobs.limits, offline_policy=OfflinePolicy(jobs.offline_policy),
                   hold_expiry_hours=float(jobs.hold_expiry_hours), paper_size=jobs.paper_size)


class Context:
    """The collaborators of every service (one per `Services`)."""

    def __init__(self, store, clock, bus: ChangeBus | None, settings: ServiceSettings | None,
                 threads, metrics=None):
        self.store = store
        self.clock = clock
        self.bus = bus if bus is not None else ChangeBus()
        self.settings = settings or ServiceSettings()
        #: The server's metrics (`timer()`, `job_decided(path, action, charged, seconds)`), or
        #: None: the job service counts every decision it records there.
        self.metrics = metrics
        # Password and PIN hashing is slow on purpose: in the reactor's thread pool when there
        # is one, so that it never holds up the reactor.
        self.threads = threads

    def now(self) -> datetime:
        return utcnow(self.clock)

    async def hash_secret(self, secret: str) -> str:
        if self.threads is not None:
            return await deferToThreadPool(self.threads, self.threads.getThreadPool(),
                                           hash_secret, secret)
        return hash_secret(secret)

    def publish(self, kind: str, id=None, op: str = "update", name: str | None = None) -> None:
        self.bus.publish(ChangeEvent(kind, id, op, name))


class Service:
    """A service of one resource: `self.ctx` holds the shared collaborators, `self.services`
    the other services (a user's creation may create groups, a release asks the job rules)."""

    def __init__(self, ctx: Context, services):
        self.ctx = ctx
        self.store = ctx.store
        self.services = services

    @staticmethod
    def audit(actor, action: str, kind: str, **kw):
        """The `audit=` argument of a store write (see `_audit.entry_maker`)."""
        return entry_maker(actor, action, kind, **kw)
