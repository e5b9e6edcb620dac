"""A real store that answers at once: pcnet's `Store`, its queries and its migrations on an
in-memory SQLite database, run in the caller's thread instead of the engine's writer thread.

For tests that drive everything in memory with `task.Clock` and `iosim` (tests/provider,
tests/net, tests/app): a Deferred from this store has fired when the call returns, so such a
test needs no reactor. Everything else about it is the SQLite engine's (transactions, errors,
the ledger guard, the change feed); store-backed tests that can wait use the real engines on
both databases (the `store` fixture).

- `inline_store(clock)`: that store, started;
- `GatedStore`: that store, whose `start()` (as a server's `StoreService` calls it) fires only
  when the test fires `starting`, with a schema status and pool figures the test sets, and
  whose change listeners are `FakeChangeListener`s;
- `FakeChangeListener` (`IChangeListener`): the test delivers "another process wrote" itself.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from pcnet.interfaces import IChangeListener
from pcnet.store import SchemaStatus, Store
from pcnet.store import _migrations
from pcnet.store._sqlite import SqliteEngine, _deliver, _Work
from tests.support.clock import clock_at


class InlineSqliteEngine(SqliteEngine):
    """The SQLite engine without its writer thread (see the module doc)."""

    def __init__(self, *, reactor):
        super().__init__(":memory:", reactor=reactor)

    async def start(self, now_us: int) -> list[int]:
        self._open(None)
        return _migrations.apply_sqlite(self._conn, now_us)

    def stop(self) -> Deferred:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return defer.succeed(None)

    def _submit(self, fn, args, *, raw) -> Deferred:
        work = _Work(fn, args, Deferred(), raw)
        outcome = self._run_raw(work) if raw else self._run_batch([work])[0]
        _deliver([outcome])
        return work.deferred


def _started(store: Store) -> Store:
    done = []
    Store.start(store).addBoth(done.append)
    if not done or isinstance(done[0], BaseException) or hasattr(done[0], "raiseException"):
        raise RuntimeError(f"the inline store did not start: {done}")
    return store


def inline_store(clock) -> Store:
    """A started store on a fresh in-memory SQLite database; `clock` stamps its times."""
    return _started(Store(InlineSqliteEngine(reactor=clock), reactor=clock, clock=clock))


@implementer(IChangeListener)
class FakeChangeListener:
    """A change listener whose "other process" is the test: `deliver(changes)` is the
    function the watcher gave `start` (None until started)."""

    how = "fake"

    def __init__(self):
        self.connected = False
        self.deliver = None

    def start(self, deliver):
        self.deliver = deliver
        self.connected = True
        return defer.succeed(None)

    def stop(self):
        self.connected = False


class GatedStore(Store):
    """The inline store (migrated already) as a server sees it starting: `start()` fires when
    the test fires `starting` (with the versions applied, or a failure); `schema` is what
    `schema_status()` answers (a `SchemaStatus`, or an exception to fail with); `pool_stats()`
    answers `pool`; `listeners` are the `FakeChangeListener`s handed out; `stopped` says
    whether `stop()` was called."""

    def __init__(self, clock=None, *, schema=SchemaStatus(5, 5, True)):
        clock = clock if clock is not None else clock_at(1_800_000_000)
        super().__init__(InlineSqliteEngine(reactor=clock), reactor=clock, clock=clock)
        _started(self)
        self.starting = Deferred()
        self.stopped = False
        self.schema = schema
        self.pool = {"size": 4, "in_use": 1, "waiting": 2}
        self.listeners: list[FakeChangeListener] = []

    def start(self):
        return self.starting

    def stop(self):
        self.stopped = True
        return super().stop()

    def schema_status(self):
        if isinstance(self.schema, Exception):
            return defer.fail(self.schema)
        return defer.succeed(self.schema)

    def pool_stats(self):
        return dict(self.pool)

    def change_listener(self, clock, *, interval):
        listener = FakeChangeListener()
        self.listeners.append(listener)
        return listener
