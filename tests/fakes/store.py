"""A real store that answers at once: pcnet's `Store`, its queries and its migrations on an
in-memory SQLite database, run in the caller's thread instead of the engine's writer thread.

For tests that drive everything in memory with `task.Clock` and `iosim` (tests/provider,
tests/net): a Deferred from this store has fired when the call returns, so such a test needs
no reactor. Everything else about it is the SQLite engine's (transactions, errors, the ledger
guard, the change feed); store-backed tests that can wait use the real engines on both
databases (the `store` fixture).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.defer import Deferred

from pcnet.store import Store
from pcnet.store import _migrations
from pcnet.store._sqlite import SqliteEngine, _deliver, _Work


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


def inline_store(clock) -> Store:
    """A started store on a fresh in-memory SQLite database; `clock` stamps its times."""
    store = Store(InlineSqliteEngine(reactor=clock), reactor=clock, clock=clock)
    done = []
    store.start().addBoth(done.append)
    if not done or isinstance(done[0], BaseException) or hasattr(done[0], "raiseException"):
        raise RuntimeError(f"the inline store did not start: {done}")
    return store
