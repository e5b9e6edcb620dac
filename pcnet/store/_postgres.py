"""The PostgreSQL engine: a txpostgres `ConnectionPool`, no threads.

Interactions (the coroutine functions of `pcnet.store._queries`) run inside
`ConnectionPool.runInteraction`; each `await txn.execute(...)` is one round trip through the
reactor. Reads that need no transaction run statement by statement on any pooled connection
(`runQuery`, autocommit), which saves the BEGIN and COMMIT round trips.

The hot path, `record_job`, is a single call of the PL/pgSQL function `pcnet_record_job`
(created by the migration; see its comment for why): one round trip per charged job, and
PostgreSQL groups the commits of concurrent connections into shared WAL flushes by itself.

A connection that dies (server restart, fail-over) is reconnected in the background by
txpostgres's `DeadConnectionDetector`; meanwhile calls fail at once with `StoreUnavailable`
instead of hanging.
"""

from __future__ import annotations

from psycopg2 import errorcodes
from psycopg2 import extensions as pgext
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, txpostgres
from txpostgres.psycopg2_impl import psycopg2

from pcnet.errors import (
    Conflict,
    NotFound,
    PcnetError,
    StoreUnavailable,
)
from pcnet.store import _migrations, _queries
from pcnet.store._convert import job_from_row, transaction_from_row

#: Advisory lock of the change feed (see the migration): writers shared, readers exclusive.
FEED_LOCK = 482131539316

#: Unique indexes whose violation means "a twin of this entry or job committed meanwhile":
#: the operation is retried and then finds the stored row (a repeat is a no-op).
_TWIN_CONSTRAINTS = ("jobs_uuid_key", "transactions_uuid_key")

_RECORD_JOB = ("SELECT job_id, job_existed, txn_id, txn_balance_after, txn_existed"
               " FROM pcnet_record_job(" + ", ".join(["%s"] * 26) + ")")

log = Logger()


def describe_dsn(dsn: str) -> str:
    """host:port/dbname of a libpq URL or keyword DSN, for messages (never the password)."""
    try:
        params = pgext.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "(unparsable address)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{dbname}"


def _password(dsn: str) -> str | None:
    try:
        return pgext.parse_dsn(dsn).get("password")
    except psycopg2.ProgrammingError:
        return None


class PgTxn:
    """What an interaction gets on PostgreSQL: each `execute` is a Deferred round trip."""

    engine = "postgres"
    for_update = " FOR UPDATE"
    ledger_function = True   # the ledger steps run in the database (pcnet_apply_entry)

    __slots__ = ("_cursor",)

    def __init__(self, cursor):
        self._cursor = cursor

    def execute(self, sql: str, params=None):
        return self._cursor.execute(sql, params)

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    async def lock_change_feed(self) -> None:
        # Wait for every transaction that stamped a change sequence number and is still
        # running; new ones wait for this transaction. See the migration.
        await self._cursor.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK,))


class PgAutocommitTxn:
    """For read-only interactions: each statement runs by itself on any pooled connection."""

    engine = "postgres"
    for_update = ""
    ledger_function = True

    __slots__ = ("_next", "_pool", "_rows")

    def __init__(self, pool):
        self._pool = pool
        self._rows = []
        self._next = 0

    async def execute(self, sql: str, params=None) -> None:
        self._rows = await self._pool.runQuery(sql, params)
        self._next = 0

    def fetchone(self):
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self):
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    @property
    def rowcount(self) -> int:
        return len(self._rows)

    async def lock_change_feed(self) -> None:
        raise RuntimeError("the change feed is read in a transaction")


def _is_dead(failure) -> bool:
    """Does this failure mean the connection is gone (rather than the statement failed)?"""
    if failure.check(psycopg2.InterfaceError, txpostgres.RollbackFailed):
        return True
    e = failure.check(psycopg2.OperationalError) and failure.value
    if not e:
        return False
    code = e.pgcode
    # No SQLSTATE: libpq lost the connection. 08: connection exception. 57P01-3: the server
    # is shutting down or restarting. Lock timeouts, deadlocks, serialisation failures are
    # OperationalErrors too, but the connection is fine after them.
    return code is None or code.startswith("08") or code in ("57P01", "57P02", "57P03")


class _Detector(reconnection.DeadConnectionDetector):
    def __init__(self, engine, reactor):
        super().__init__(deathChecker=_is_dead, reconnectionIterator=engine._retry_delays,
                         reactor=reactor)
        self._engine = engine

    def reconnect(self):
        if self._engine._stopping:
            raise StoreUnavailable("the store is stopping")
        return super().reconnect()

    def connectionRecovered(self):
        log.info("PostgreSQL at {address}: connection re-established", address=self._engine.address)
        return super().connectionRecovered()


class _Pool(txpostgres.ConnectionPool):
    """txpostgres's pool, on our reactor, with a dead-connection detector per connection."""

    def __init__(self, engine, reactor, dsn, size):
        self.reactor = reactor
        self._engine = engine
        super().__init__(None, dsn, min=size, application_name="pcnet")

    def connectionFactory(self, reactor, cooperator):
        return txpostgres.Connection(reactor, cooperator, detector=_Detector(self._engine, reactor))

    def close_quietly(self):
        for c in list(self.connections):
            try:
                c.close()
            except Exception:
                pass


class PostgresEngine:
    """Connection set-up, migrations and transactions for one PostgreSQL database."""

    name = "postgres"
    connect_timeout = 10.0

    def __init__(self, dsn: str, *, reactor, pool_size: int = 16):
        self.dsn = dsn
        self.address = describe_dsn(dsn)
        self._secret = _password(dsn)
        self._reactor = reactor
        self._pool_size = pool_size
        self._pool: _Pool | None = None
        self._stopping = False
        self._in_flight = 0
        self._idle_waiters: list[Deferred] = []

    # --- life cycle ------------------------------------------------------------------------

    async def start(self, now_us: int) -> list[int]:
        if self._pool is not None:
            raise RuntimeError("PostgresEngine.start called twice")
        self._pool = _Pool(self, self._reactor, self.dsn, self._pool_size)
        try:
            await self._connect_pool()
        except Exception as e:
            self._stopping = True
            self._pool.close_quietly()
            reason = e.subFailure.value if hasattr(e, "subFailure") else e
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.address}: {self._first_line(reason)}"
            ) from None
        try:
            return await _migrations.apply_postgres(self.run, now_us)
        except Exception:
            self._stopping = True
            self._pool.close_quietly()
            raise

    def _connect_pool(self) -> Deferred:
        """pool.start(), failing after connect_timeout: libpq enforces no timeout on
        asynchronous connections. The connection attempts are abandoned, not cancelled:
        cancelling one makes libpq send a cancel request, a blocking call that would hang
        the reactor on a server that does not answer."""
        outcome = Deferred()

        def timed_out():
            outcome.errback(TimeoutError(f"no answer within {self.connect_timeout:g} s"))

        timer = self._reactor.callLater(self.connect_timeout, timed_out)

        def finished(result):
            if timer.active():
                timer.cancel()
                if isinstance(result, Failure):
                    outcome.errback(result)
                else:
                    outcome.callback(result)
            # A late result after the timeout is dropped (and its failure consumed).

        self._pool.start().addBoth(finished)
        return outcome

    async def stop(self) -> None:
        """Let the operations in flight finish, then close every connection."""
        self._stopping = True
        if self._in_flight:
            idle = Deferred()
            self._idle_waiters.append(idle)
            await idle
        if self._pool is not None:
            self._pool.close_quietly()

    def _retry_delays(self):
        delay = 0.0
        while not self._stopping:
            yield delay
            delay = min(max(delay * 2, 0.5), 10.0)

    # --- running interactions -------------------------------------------------------------

    def run(self, fn, *args, readonly=False) -> Deferred:
        """Run `fn(txn, *args)` (a coroutine function) in a transaction, or statement by
        statement in autocommit mode when `readonly`."""
        self._check_running()
        return self._track(Deferred.fromCoroutine(self._run(fn, args, readonly)))

    def _check_running(self):
        if self._stopping or self._pool is None:
            raise StoreUnavailable(f"PostgreSQL at {self.address}: the store is not running")

    async def _run(self, fn, args, readonly):
        for attempt in range(3):
            try:
                if readonly:
                    return await fn(PgAutocommitTxn(self._pool), *args)
                return await self._pool.runInteraction(_interaction, fn, args)
            except Exception as e:
                if attempt < 2 and _is_twin(e):
                    continue
                raise self.translate(e) from None

    def record_job(self, job: tuple, charge: tuple | None, guard: bool) -> Deferred:
        """The job log row and its charge in one round trip (`pcnet_record_job`).

        `job` and `charge` are column values (see `pcnet.store._queries.record_job`, the
        SQLite twin of this). Fires with (JobRecord, Transaction | None)."""
        self._check_running()
        return self._track(Deferred.fromCoroutine(self._record_job(job, charge, guard)))

    async def _record_job(self, job, charge, guard):
        params = job + (charge or (None,) * 8) + (bool(guard),)
        for attempt in range(3):
            try:
                rows = await self._pool.runQuery(_RECORD_JOB, params)
                break
            except Exception as e:
                if attempt < 2 and _is_twin(e):
                    continue
                raise self.translate(e) from None
        job_id, job_existed, txn_id, balance_after, txn_existed = rows[0]
        if job_existed:
            # A repeat: what was stored the first time, not what was sent now.
            return await self._run(_queries.stored_job, (job[0],), True)
        record = job_from_row((job_id,) + job)
        if charge is None:
            return record, None
        if txn_existed:
            return record, await self._run(_queries.get_transaction_by_uuid, (charge[0],), True)
        return record, transaction_from_row((txn_id,) + charge[:3] + (balance_after,) + charge[3:])

    def _track(self, d: Deferred) -> Deferred:
        """Count `d` as in flight until it fires (stop() waits for none to be left)."""
        self._in_flight += 1

        def done(result):
            self._in_flight -= 1
            if not self._in_flight:
                waiters, self._idle_waiters = self._idle_waiters, []
                for w in waiters:
                    w.callback(None)
            return result

        d.addBoth(done)
        return d

    # --- errors ----------------------------------------------------------------------------

    def translate(self, e: BaseException) -> BaseException:
        """psycopg2/txpostgres errors -> pcnet errors; anything else unchanged."""
        if isinstance(e, PcnetError):
            return e
        if isinstance(e, reconnection.ConnectionDead):
            return StoreUnavailable(
                f"PostgreSQL at {self.address} is unreachable; reconnecting in the background")
        if isinstance(e, psycopg2.Error):
            code = e.pgcode
            if code == "PCN01":
                account_id, balance, overdraft, amount = (int(x) for x in e.diag.message_detail.split(","))
                return _queries.insufficient_funds(account_id, balance, overdraft, amount)
            if code == "PCN02":
                return NotFound(e.diag.message_primary)
            if code == errorcodes.UNIQUE_VIOLATION:
                return Conflict(f"conflicts with an existing record ({e.diag.constraint_name})")
            if code == errorcodes.FOREIGN_KEY_VIOLATION:
                return NotFound("refers to a record that does not exist")
            if isinstance(e, (psycopg2.InterfaceError, psycopg2.OperationalError)) and _is_dead_error(e):
                return StoreUnavailable(f"PostgreSQL at {self.address}: {self._first_line(e)}")
        if isinstance(e, txpostgres.RollbackFailed):
            return StoreUnavailable(f"PostgreSQL at {self.address}: the connection failed mid-transaction")
        return e

    def _first_line(self, e) -> str:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if self._secret:
            text = text.replace(self._secret, "***")
        return text or type(e).__name__


def _is_dead_error(e) -> bool:
    if isinstance(e, psycopg2.InterfaceError):
        return True
    code = e.pgcode
    return code is None or code.startswith("08") or code in ("57P01", "57P02", "57P03")


def _is_twin(e) -> bool:
    return (isinstance(e, psycopg2.IntegrityError)
            and e.pgcode == errorcodes.UNIQUE_VIOLATION
            and e.diag.constraint_name in _TWIN_CONSTRAINTS)


def _interaction(cursor, fn, args):
    return Deferred.fromCoroutine(_interact(PgTxn(cursor), fn, args))


async def _interact(txn, fn, args):
    if not getattr(fn, "reads_change_feed", False):
        # Taken first, before any row lock, so changes_since can never be part of a lock
        # cycle with this transaction (see the migration).
        await txn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (FEED_LOCK,))
    return await fn(txn, *args)
