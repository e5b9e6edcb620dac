"""Hearing about writes that other processes commit to the same database.

A server caches what its hot path reads (printers, users, balances: `pcnet.app.jobs`). Its own
writes tell its caches directly (the change bus); these listeners tell it about everyone
else's: a `pcnet` command run on the server's shell, a second Application Server on the same
PostgreSQL. `store.change_listener(clock, interval=...)` gives the one for the store's engine;
`start(deliver)` calls `deliver(changes)` with a list of `StoreChange`, or with None when it
cannot know what changed (it was deaf for a while: after a lost connection, or more changed
than it reads at once) and everything cached must be forgotten.

- **PostgreSQL**: triggers on the replicated tables (migration 0005) `NOTIFY pcnet_changes` with
  a small JSON payload (table, op, key, name) inside the writing transaction, so every writer
  is heard, whoever it is, and only once its transaction commits. A dedicated connection
  `LISTEN`s. It is probed every few seconds; when it is lost it is re-made (every `interval`
  seconds until it works) and, once listening again, `deliver(None)`.
  Why not the change feed (`changes_since`) here: it takes the feed's advisory lock
  exclusively, which waits for and holds up every writer, and a busy server's every charge
  would ask for it. The notification already says what changed. Charges are not notified
  (the account trigger skips an update that only lowered the balance): a balance another
  server lowered is caught by the charging transaction's guard, while one that rose (a
  top-up) or an account whose rules changed must reach every server.
- **SQLite**: one process serves; other processes are `pcnet` commands. Every `interval`
  seconds the store's own connection reads `PRAGMA data_version`, which moves only when
  another connection committed; then the change feed (`changes_since`, cheap here: one
  writer, no lock to wait for) says exactly what changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pcnet.interfaces import IChangeListener

log = Logger(namespace="pcnet.store.watch")

#: The notification channel of migration 0005's triggers.
CHANNEL = "pcnet_changes"

#: Changes read through the feed at once on SQLite before giving up and forgetting everything.
FEED_PAGE = 1000
FEED_PAGES = 10


@dataclass(frozen=True)
class StoreChange:
    """One row another process changed: `table` (a replicated table's name), `op` ("insert",
    "update" or "delete"), `key` (the row's id as text, a card number, a job uuid, a node name;
    "a,b" for a link table), `name` (a username or printer name where caches key by it)."""

    table: str
    op: str
    key: str
    name: str | None = None


def listener_for(store, engine, clock, *, interval: float):
    if engine.name == "postgres":
        return PostgresChangeListener(engine, clock, interval=interval)
    if engine.name == "sqlite":
        return SqliteChangeListener(store, engine, clock, interval=interval)
    raise ValueError(f"no change listener for the {engine.name} engine")


def _name_of(record) -> str | None:
    for attribute in ("username", "name"):
        value = getattr(record, attribute, None)
        if isinstance(value, str):
            return value
    return None


def _key_text(key) -> str:
    if isinstance(key, tuple):
        return ",".join(str(k) for k in key)
    return str(key)


@implementer(IChangeListener)
class SqliteChangeListener:
    """Polls `PRAGMA data_version` on the store's connection; reads the change feed when it
    moved (see the module's doc)."""

    how = "poll"

    def __init__(self, store, engine, clock, *, interval: float):
        self.store = store
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.connected = False
        self._seq = 0
        self._version = None
        self._loop: task.LoopingCall | None = None
        self._deliver = None
        self._failing = False

    def start(self, deliver) -> Deferred:
        self._deliver = deliver
        return Deferred.fromCoroutine(self._start())

    async def _start(self):
        self._seq, self._version = await self.engine.seq_and_version()
        self.connected = True
        loop = self._loop = task.LoopingCall(self._tick)
        loop.clock = self.clock
        loop.start(self.interval, now=False).addErrback(
            lambda f: log.failure("watching the SQLite database stopped", f))

    def _tick(self) -> Deferred:
        return Deferred.fromCoroutine(self.check())

    async def check(self) -> None:
        """One look: did another connection commit since the last one? (Also what the timer
        runs.) Never raises: a store that cannot answer is logged once and asked again."""
        try:
            seq_now, version = await self.engine.seq_and_version()
            if version == self._version:
                # Nobody else committed since the last look: every change up to seq_now is
                # this process's own, already told to the caches by the bus.
                self._seq = max(self._seq, seq_now)
            else:
                self._version = version
                await self._read_feed(seq_now)
        except Exception as e:
            if not self._failing:
                self._failing = True
                self.connected = False
                log.warn("cannot check the SQLite database for other writers: {error}",
                         error=getattr(e, "message", None) or repr(e))
            return
        if self._failing:
            self._failing = False
            self.connected = True
            log.info("checking the SQLite database for other writers again")
            self._deliver(None)

    async def _read_feed(self, seq_now: int) -> None:
        changes, seq = [], self._seq
        for _ in range(FEED_PAGES):
            page = await self.store.changes_since(seq, FEED_PAGE)
            changes.extend(page)
            if page:
                seq = page[-1].seq
            if len(page) < FEED_PAGE:
                break
        else:
            # Too much to tell one by one: forget everything (after the commits seen).
            self._seq = max(seq, seq_now)
            self._deliver(None)
            return
        self._seq = max(self._seq, seq)
        if changes:
            self._deliver([StoreChange(c.table, "delete" if c.record is None else "update",
                                       _key_text(c.key), _name_of(c.record)) for c in changes])

    def stop(self) -> None:
        self.connected = False
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


@implementer(IChangeListener)
class PostgresChangeListener:
    """LISTENs on a connection of its own (see the module's doc)."""

    how = "listen"
    #: Seconds between probes of the listening connection (a lost one is found at the latest then).
    probe_interval = 5.0
    probe_timeout = 5.0
    connect_timeout = 10.0

    def __init__(self, engine, clock, *, interval: float):
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.connected = False
        self._running = False
        self._deliver = None
        self._conn = None
        self._is_lost = False
        self._wake: Deferred | None = None
        self._task: Deferred | None = None
        self._first: Deferred | None = None

    def start(self, deliver) -> Deferred:
        """Fires once listening for the first time (or after the first failed attempt: the
        server does not wait for it; it keeps trying, logged)."""
        self._deliver = deliver
        self._running = True
        self._first = Deferred()
        self._task = Deferred.fromCoroutine(self._run())
        self._task.addErrback(lambda f: log.failure("listening for PostgreSQL changes stopped", f))
        return self._first

    def _started(self) -> None:
        first, self._first = self._first, None
        if first is not None:
            first.callback(None)

    async def _run(self) -> None:
        warned = False
        while self._running:
            try:
                await self._listen()
            except Exception as e:
                self._close()
                if self._running and not warned:
                    warned = True
                    log.warn("cannot listen for changes on PostgreSQL at {address}: {error}; "
                             "trying again every {interval:g} s", address=self.engine.address,
                             error=self.engine._first_line(e), interval=self.interval)
                self._started()
                if self._running:
                    await task.deferLater(self.clock, self.interval)
                continue
            if warned:
                log.info("listening for changes on PostgreSQL at {address} again",
                         address=self.engine.address)
            warned = False
            self.connected = True
            self._started()
            # Whatever was written while nobody listened (or before the first LISTEN) is unknown.
            self._deliver(None)
            await self._until_lost()
            self.connected = False
            self._close()
            if self._running:
                log.warn("lost the PostgreSQL connection that listens for changes; listening again")

    async def _listen(self) -> None:
        from txpostgres import txpostgres

        listener = self

        class _Connection(txpostgres.Connection):
            def connectionLost(self, reason):
                super().connectionLost(reason)
                listener._gone()

        conn = self._conn = _Connection(reactor=self.clock)
        self._is_lost = False
        connecting = conn.connect(self.engine.dsn, application_name="pcnet-watch")
        connecting.addTimeout(self.connect_timeout, self.clock)
        await connecting
        conn.addNotifyObserver(self._notified)
        await conn.runOperation(f"LISTEN {CHANNEL}")

    async def _until_lost(self) -> None:
        """Returns when the listening connection is gone (closed, or a probe unanswered)."""
        while self._running and not self._is_lost:
            self._wake = task.deferLater(self.clock, self.probe_interval)
            try:
                await self._wake
            except CancelledError:
                return
            finally:
                self._wake = None
            if not self._running or self._is_lost:
                return
            try:
                probe = self._conn.runQuery("SELECT 1")
                probe.addTimeout(self.probe_timeout, self.clock)
                await probe
            except Exception:
                return

    def _gone(self) -> None:
        self._is_lost = True
        wake = self._wake
        if wake is not None and not wake.called:
            wake.cancel()

    def _notified(self, notify) -> None:
        if notify.channel != CHANNEL:
            return
        try:
            payload = json.loads(notify.payload)
            change = StoreChange(str(payload["table"]), str(payload["op"]), str(payload["key"]),
                                 payload.get("name"))
        except (ValueError, KeyError, TypeError):
            log.warn("unreadable change notification {payload!r}; forgetting every cached record",
                     payload=notify.payload[:200])
            self._deliver(None)
            return
        self._deliver([change])

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def stop(self) -> None:
        self._running = False
        self.connected = False
        self._gone()
        self._close()
        self._started()

