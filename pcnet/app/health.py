"""What `GET /api/health` reports: whether this server should get traffic, and why not.

A report is a JSON object with nothing secret in it (no address of the database, no names of
users): `status` (`ok`, `starting`, `unavailable` or `stopping`), `role`, `version`, `node`,
and one section per check. The Application Server's checks are:

- `database`: reachable (a read answered within `timeout` seconds), `engine`, and the schema:
  `schema_version` applied, `schema_latest` this pcnet knows, `migrations_current`;
- `links`: approved pcnet/1 links up, by role (`provider`, `site`, `device`);
- `changes`: the watcher of other processes' writes (`pcnet.app.watch`): how it watches and
  whether it is connected.

A check is a function returning a dict (or a Deferred of one); `"ok": False` in it makes the
status `unavailable` (HTTP 503, so that a load balancer sends the traffic elsewhere). Another
role adds its own sections with `add` — a Site Server its `site` section (online or offline,
replica sequence and lag, journal backlog) — without changing this module.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, maybeDeferred

import pcnet
from pcnet.app.metrics import links_up

OK, STARTING, UNAVAILABLE, STOPPING = "ok", "starting", "unavailable", "stopping"


class Health:
    """The health report of one server: `report()` fires with (HTTP status, dict)."""

    def __init__(self, *, role: str, node: str, clock):
        self.role = role
        self.node = node
        self.clock = clock
        self.state = STARTING
        self._checks: list[tuple[str, Callable[[], object], bool]] = []

    def add(self, name: str, check: Callable[[], object], *, critical: bool = True) -> None:
        """Report `check()` under `name`; a critical check saying `"ok": False` makes the
        server unavailable, another is only reported."""
        self._checks.append((name, check, critical))

    def report(self) -> Deferred:
        return Deferred.fromCoroutine(self._report())

    async def _report(self):
        out = {"status": self.state, "role": self.role, "version": pcnet.__version__,
               "node": self.node}
        healthy = self.state == OK
        for name, check, critical in self._checks:
            try:
                section = await maybeDeferred(check)
            except Exception as e:
                section = {"ok": False, "error": type(e).__name__}
            out[name] = section
            if critical and section.get("ok") is False:
                healthy = False
        if not healthy and out["status"] == OK:
            out["status"] = UNAVAILABLE
        return (200 if healthy else 503), out


def database_check(store, *, clock, timeout: float = 2.0) -> Callable[[], Deferred]:
    """The `database` section: a read of the schema's versions within `timeout` seconds."""

    async def check():
        section = {"engine": getattr(store, "engine", "?")}
        d = store.schema_status()
        d.addTimeout(timeout, clock)
        try:
            status = await d
        except Exception as e:
            section.update(ok=False, reachable=False, error=_why(e))
            return section
        section.update(reachable=True, schema_version=status.version,
                       schema_latest=status.latest, migrations_current=status.current,
                       ok=status.current)
        return section

    return check


def links_check(sessions) -> Callable[[], dict]:
    """The `links` section: approved pcnet/1 sessions by role, from an `INodeSessions` (the
    service layer's `sessions`; never fails the report)."""
    return lambda: links_up(sessions)


def _why(e: Exception) -> str:
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    from pcnet.errors import PcnetError

    if isinstance(e, DeferredTimeout):
        return "no answer in time"
    if isinstance(e, PcnetError):
        return e.code
    return type(e).__name__
