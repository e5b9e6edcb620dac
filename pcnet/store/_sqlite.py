"""The SQLite engine: one connection on one dedicated writer thread, with group commit.

SQLite allows one writer at a time, and a commit with `synchronous=FULL` costs an fsync, so the
engine owns exactly one connection and serialises every interaction on one thread (the reactor
thread never waits for SQLite). Interactions are queued; each time the thread finishes a batch
it takes everything that queued up meanwhile and runs it in ONE transaction, each interaction
inside its own SAVEPOINT: an interaction that fails (a guard refusing a charge, a duplicate
name) is rolled back to its savepoint and fails alone, the others commit together with a
single fsync. Results are handed back to the reactor only after that COMMIT has returned, so
every acknowledged write is on disk. That is group commit: the busier the store, the more
interactions share one fsync.

Interactions are the coroutine functions of `pcnet.store._queries`. On this engine their
`await txn.execute(...)` never suspends (the statement runs at once on this thread), so the
thread drives each coroutine to completion with a single `send`.
"""

from __future__ import annotations

import collections
import os
import re
import sqlite3
import stat
import threading
from functools import lru_cache
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pcnet.errors import Conflict, NotFound, PcnetError, StoreUnavailable
from pcnet.store import _migrations, _queries
from pcnet.store._records import CursorTxn

#: Most interactions committed by one COMMIT. Bounds the latency a long queue adds.
MAX_BATCH = 256


@lru_cache(maxsize=1024)
def qmark(sql: str) -> str:
    """Queries are written in psycopg2's paramstyle (%s, with %% for a literal %); SQLite's
    is qmark (?)."""
    return re.sub(r"%([s%])", lambda m: "?" if m.group(1) == "s" else "%", sql)


class SqliteTxn(CursorTxn):
    """What an interaction gets on SQLite: statements run synchronously on the writer thread."""

    engine = "sqlite"
    for_update = ""          # one writer: every row read in a transaction is already stable
    ledger_function = False  # the ledger steps run in Python (pcnet.store._queries.apply_entry)

    __slots__ = ()

    def __init__(self, connection: sqlite3.Connection):
        super().__init__(connection.cursor())

    async def execute(self, sql: str, params=()) -> None:
        self._cursor.execute(qmark(sql), params or ())

    async def lock_change_feed(self) -> None:
        """Nothing to wait for: with one writer, sequence order is commit order."""


def drive(coro):
    """Run an interaction coroutine that never suspends to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a SQLite interaction awaited something other than a statement")


def translate_error(e: BaseException, path: str) -> BaseException:
    """sqlite3 errors -> pcnet errors; anything else unchanged."""
    if isinstance(e, PcnetError):
        return e
    if isinstance(e, sqlite3.IntegrityError):
        text = str(e)
        if text.startswith("UNIQUE constraint failed") or "PRIMARY KEY" in text:
            return Conflict(f"conflicts with an existing record ({text.split(': ', 1)[-1]})")
        if text.startswith("FOREIGN KEY constraint failed"):
            return NotFound("refers to a record that does not exist")
        return Conflict(text)
    if isinstance(e, sqlite3.OperationalError) and (
            "locked" in str(e) or "disk" in str(e) or "unable to open" in str(e)
            or "readonly" in str(e)):
        return StoreUnavailable(f"SQLite database {path}: {e}")
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
        if "not a database" in str(e) or "malformed" in str(e):
            return StoreUnavailable(f"SQLite database {path}: {e}")
    return e


class _Work:
    __slots__ = ("args", "deferred", "fn", "raw")

    def __init__(self, fn, args, deferred, raw):
        self.fn = fn
        self.args = args
        self.deferred = deferred
        self.raw = raw


class SqliteEngine:
    """Connection set-up, migrations and the writer thread for one SQLite database file."""

    name = "sqlite"

    def __init__(self, path: str, *, reactor):
        self.path = path  # ":memory:" or an absolute or relative file name
        self._reactor = reactor
        self._cond = threading.Condition()
        self._queue: collections.deque[_Work] = collections.deque()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._stopped: Deferred | None = None
        self._conn: sqlite3.Connection | None = None
        #: Interactions run and COMMITs made (written by the writer thread; for tests and
        #: monitoring: interactions / commits is the mean group-commit batch).
        self.stats = {"interactions": 0, "commits": 0}

    # --- life cycle ------------------------------------------------------------------------

    async def start(self, now_us: int) -> list[int]:
        """Open the database on the writer thread and apply pending migrations."""
        if self._thread is not None:
            raise RuntimeError("SqliteEngine.start called twice")
        self._stopped = Deferred()
        self._thread = threading.Thread(target=self._loop, name=f"pcnet-sqlite {self.path}",
                                        daemon=True)
        self._thread.start()
        try:
            await self._submit(self._open, (), raw=True)
            return await self._submit(_migrations.apply_sqlite, (now_us,), raw=True)
        except BaseException:
            await self.stop()
            raise

    def stop(self) -> Deferred:
        """Finish what is queued, close the connection, end the thread."""
        if self._thread is None:
            d = Deferred()
            d.callback(None)
            return d
        with self._cond:
            self._closing = True
            self._cond.notify()
        d = Deferred()
        self._stopped.addBoth(lambda r: d.callback(None))
        return d

    def _open(self, _conn) -> None:
        # Runs on the writer thread: the connection never leaves it.
        if self.path != ":memory:":
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                raise StoreUnavailable(
                    f"cannot open SQLite database {self.path}: directory {directory} does not exist")
            try:
                private_database_files(self.path)
            except OSError as e:
                raise StoreUnavailable(f"cannot open SQLite database {self.path}: {e.strerror}") from None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True,
                                   cached_statements=512)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != ":memory:" and mode.lower() != "wal":
                raise StoreUnavailable(
                    f"cannot open SQLite database {self.path}: WAL mode refused ({mode})")
            # FULL: the WAL is fsynced at every commit, so an acknowledged write survives a
            # power cut (NORMAL would only protect against a crash of this process).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {e}") from None
        self._conn = conn

    # --- running interactions -------------------------------------------------------------

    def run(self, fn, *args, readonly=False) -> Deferred:
        """Run `fn(txn, *args)` (a coroutine function) in a transaction on the writer thread."""
        return self._submit(fn, args, raw=False)

    def record_job(self, job: tuple, charge: tuple | None, guard: bool) -> Deferred:
        """The hot path: an interaction like any other here, so it joins the next group commit."""
        return self._submit(_queries.record_job, (job, charge, guard), raw=False)

    def seq_and_version(self) -> Deferred:
        """(change sequence, PRAGMA data_version), read together on the writer thread.

        data_version changes when another connection (another process) committed to the
        file since this connection last asked, and never for this connection's own commits:
        it is how a watcher notices that someone else wrote. The sequence is read first, so a
        version that did not move vouches for every change up to that sequence."""
        def read(conn):
            seq = conn.execute("SELECT seq FROM change_counter").fetchone()[0]
            return seq, conn.execute("PRAGMA data_version").fetchone()[0]

        return self._submit(read, (), raw=True)

    def pool_stats(self) -> dict:
        """One connection; what is queued for the writer thread is what waits for it."""
        with self._cond:
            waiting = len(self._queue)
        return {"size": 1, "in_use": 1 if waiting else 0, "waiting": waiting}

    def _submit(self, fn, args, *, raw) -> Deferred:
        d = Deferred()
        with self._cond:
            if self._closing or self._thread is None:
                d.errback(Failure(StoreUnavailable(f"SQLite database {self.path} is closed")))
                return d
            self._queue.append(_Work(fn, args, d, raw))
            self._cond.notify()
        return d

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        break
                    # A raw item (open, migrations) runs alone; interactions run in batches.
                    if self._queue[0].raw:
                        batch = [self._queue.popleft()]
                    else:
                        batch = []
                        while self._queue and not self._queue[0].raw and len(batch) < MAX_BATCH:
                            batch.append(self._queue.popleft())
                if batch[0].raw:
                    outcomes = [self._run_raw(batch[0])]
                else:
                    try:
                        outcomes = self._run_batch(batch)
                    except BaseException as e:
                        # Never let the writer thread die with Deferreds left unanswered.
                        _rollback(self._conn)
                        error = Failure(translate_error(e, self.path))
                        outcomes = [(w.deferred, False, error) for w in batch]
                self._reactor.callFromThread(_deliver, outcomes)
        finally:
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None
            self._reactor.callFromThread(self._stopped.callback, None)

    def _run_raw(self, work: _Work):
        try:
            return work.deferred, True, work.fn(self._conn, *work.args)
        except BaseException as e:
            return work.deferred, False, Failure(translate_error(e, self.path))

    def _run_batch(self, batch: list[_Work]):
        """One transaction for the whole batch, a savepoint per interaction (none when the
        batch has one), one COMMIT. Returns [(deferred, ok, result or Failure)]."""
        conn = self._conn
        if conn is None:
            error = Failure(StoreUnavailable(f"SQLite database {self.path} is not open"))
            return [(w.deferred, False, error) for w in batch]
        single = len(batch) == 1
        outcomes = []
        conn.execute("BEGIN IMMEDIATE")
        txn = SqliteTxn(conn)
        for work in batch:
            if not single:
                conn.execute("SAVEPOINT interaction")
            try:
                result = drive(work.fn(txn, *work.args))
            except BaseException as e:
                failure = Failure(translate_error(e, self.path))
                if single:
                    _rollback(conn)
                    return [(work.deferred, False, failure)]
                if not conn.in_transaction:
                    # Some errors (I/O, disk full) make SQLite roll back the whole
                    # transaction: the interactions before this one are lost too.
                    return [(w.deferred, False, failure) for w in batch]
                conn.execute("ROLLBACK TO interaction")
                conn.execute("RELEASE interaction")
                outcomes.append((work.deferred, False, failure))
            else:
                if not single:
                    conn.execute("RELEASE interaction")
                outcomes.append((work.deferred, True, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            # Nothing of this batch is durable: every interaction in it fails.
            _rollback(conn)
            error = Failure(translate_error(e, self.path))
            return [(w.deferred, False, error) for w in batch]
        self.stats["commits"] += 1
        self.stats["interactions"] += len(batch)
        return outcomes


def _rollback(conn) -> None:
    if conn is not None and conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _deliver(outcomes) -> None:
    # On the reactor thread, once per batch.
    for d, ok, value in outcomes:
        if ok:
            d.callback(value)
        else:
            d.errback(value)


def private_database_files(path: str) -> None:
    """Keep the database (password and PIN hashes) readable by its owner only.

    A new database file is created here, mode 0600, before SQLite opens it: SQLite gives the
    `-wal` and `-shm` files it makes the mode of the database file, whatever the umask. An
    existing database of this user's that others may read (made by an older pcnet) loses the
    group and other permissions, its `-wal` and `-shm` files too.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            try:
                st = os.stat(name)
            except FileNotFoundError:
                continue
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(name, stat.S_IMODE(st.st_mode) & 0o700)
    else:
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken the owner's bits too
        finally:
            os.close(fd)


def sqlite_path(url: str) -> str:
    """The file of a sqlite: URL. `sqlite:///abs/path` and `sqlite:////abs/path` are absolute,
    `sqlite:relative/path` is relative to the working directory, `sqlite::memory:` (or
    `sqlite://:memory:`) is a private in-memory database."""
    rest = url[len("sqlite:"):]
    if rest in (":memory:", "//:memory:", "///:memory:"):
        return ":memory:"
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ValueError(f"{url}: expected sqlite:///absolute/path")
        return "/" + rest.lstrip("/")
    if not rest:
        raise ValueError(f"{url}: no file name")
    return str(Path(rest))
