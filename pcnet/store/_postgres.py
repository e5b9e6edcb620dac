"""The PostgreSQL engine: a txpostgres `ConnectionPool`, no threads.

Interactions (the coroutine functions of `pcnet.store._queries`) run inside
`ConnectionPool.runInteraction`; each `await txn.execute(...)` is one round trip through the
reactor. Reads that need no transaction run statement by statement on any pooled connection
(`runQuery`, autocommit), which saves the BEGIN and COMMIT round trips.

The hot path, `record_job`, is a call of the PL/pgSQL function `pcnet_record_job` (created by
the first migration, re-created with the `problem` column by the third; see their comments): one
round trip per charged job, and PostgreSQL groups the commits of concurrent connections into
shared WAL flushes by itself. When the store is busy it batches: at most `record_job_slots`
record_job statements are in flight, and the calls that arrive meanwhile wait, to go together
(up to MAX_BATCH) as ONE call of `pcnet_record_jobs` (second migration, re-created by the third)
as soon as a statement comes back, each job in its own subtransaction. It is the shape of the
SQLite engine's group commit: whoever is free takes everything queued.

A connection that dies (server restart, fail-over) is reconnected in the background by
txpostgres's `DeadConnectionDetector`; meanwhile calls fail at once with `StoreUnavailable`
instead of hanging.
"""

from __future__ import annotations

import collections
import json

from psycopg2 import errorcodes
from twisted.internet.defer import Deferred, DeferredList
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
from pcnet.store._address import describe_address, scrub
from pcnet.store._convert import job_from_row, transaction_from_row
from pcnet.store._records import CursorTxn

#: Advisory lock of the change feed (see the migration): writers shared, readers exclusive.
FEED_LOCK = 482131539316

#: Unique indexes whose violation means "a twin of this entry or job committed meanwhile":
#: the operation is retried and then finds the stored row (a repeat is a no-op).
_TWIN_CONSTRAINTS = ("jobs_uuid_key", "transactions_uuid_key")

_RECORD_JOB = ("SELECT job_id, job_existed, txn_id, txn_balance_after, txn_existed"
               " FROM pcnet_record_job(" + ", ".join(["%s"] * 27) + ")")

#: Most record_job calls sent as one pcnet_record_jobs statement. Bounds the statement's size
#: and the time its row locks are held. Keep it at most 64: each job is a subtransaction with an
#: xid of its own, and a transaction with more than 64 of them overflows PostgreSQL's per-backend
#: subtransaction cache, which slows every snapshot on the server.
MAX_BATCH = 64

_RECORD_JOBS = ("SELECT i, job_id, job_existed, txn_id, txn_balance_after, txn_existed,"
                " err_code, err_message, err_detail FROM pcnet_record_jobs(%s::jsonb)")

#: The keys of a pcnet_record_jobs item: the job's columns (pcnet.store._queries.record_job),
#: then the charge's (an uncharged job leaves them out: null).
_JOB_KEYS = ("uuid", "user_id", "username", "printer_id", "account_id", "pages", "colour_pages",
             "duplex", "copies", "paper_size", "document_name", "cost", "status", "reason",
             "client", "origin", "created_at", "problem")
_CHARGE_KEYS = ("c_uuid", "c_account_id", "c_amount", "c_kind", "c_reference", "c_comment",
                "c_origin", "c_created_at")

log = Logger()


class PgTxn(CursorTxn):
    """What an interaction gets on PostgreSQL: each `execute` is a Deferred round trip."""

    engine = "postgres"
    for_update = " FOR UPDATE"
    ledger_function = True   # the ledger steps run in the database (pcnet_apply_entry)

    __slots__ = ()

    def execute(self, sql: str, params=None):
        return self._cursor.execute(sql, params)

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
    #: record_job statements in flight at once (at most the pool size). While they all are,
    #: further calls wait and then go as one pcnet_record_jobs batch: fewer slots make bigger
    #: batches (less Python work per job), more slots more parallel work in the database.
    record_job_slots = 4

    def __init__(self, dsn: str, *, reactor, pool_size: int = 16):
        self.dsn = dsn
        self.address = describe_address(dsn)
        self._reactor = reactor
        self._pool_size = pool_size
        self._pool: _Pool | None = None
        self._stopping = False
        self._in_flight = 0
        self._idle_waiters: list[Deferred] = []
        self._waiting: collections.deque[_Call] = collections.deque()
        self._sending = 0
        self._pumping = False
        #: record_job calls and the statements that carried them (for tests and monitoring:
        #: calls / statements is the mean batch), the batches among those statements, and the
        #: calls run again alone after their batch (a twin committed meanwhile, a deadlock
        #: victim, a batch that failed as a whole).
        self.stats = {"record_job_calls": 0, "record_job_statements": 0, "record_job_batches": 0,
                      "record_job_retried_alone": 0}

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

    def pool_stats(self) -> dict:
        """Connections in use and idle, and operations waiting (for a connection, or for a
        record_job slot)."""
        pool = self._pool
        if pool is None:
            return {"size": self._pool_size, "in_use": 0, "waiting": 0}
        idle = len(pool.connections)
        return {"size": pool.min, "in_use": max(0, pool.min - idle),
                "waiting": len(pool._semaphore.waiting) + len(self._waiting)}

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
        """The job log row and its charge in one round trip, alone (`pcnet_record_job`) or
        together with the other calls waiting (`pcnet_record_jobs`).

        `job` and `charge` are column values (see `pcnet.store._queries.record_job`, the
        SQLite twin of this). Fires with (JobRecord, Transaction | None).

        At most `record_job_slots` statements are in flight: a call that finds one free goes
        at once, alone (no added latency when the store is not busy); the others wait, and each
        time a statement comes back everything waiting (up to MAX_BATCH) goes as one batch. A
        call gets the result or the error (InsufficientFunds, NotFound, Conflict, ...) it would
        get alone."""
        self._check_running()
        call = _Call(job, charge, bool(guard))
        d = self._track(call.deferred)
        self._waiting.append(call)
        self._send_waiting()
        return d

    def _send_waiting(self) -> None:
        if self._pumping:
            return   # re-entered by a statement that failed at once: the loop below goes on
        self._pumping = True
        try:
            limit = max(1, min(self.record_job_slots, self._pool_size))
            while self._waiting and self._sending < limit:
                n = min(len(self._waiting), MAX_BATCH)
                calls = [self._waiting.popleft() for _ in range(n)]
                self._sending += 1
                Deferred.fromCoroutine(self._send(calls))
        finally:
            self._pumping = False

    async def _send(self, calls: list[_Call]) -> None:
        """Send `calls` in one statement and answer each; then let the next batch go. Never
        fails: every outcome goes to its caller."""
        try:
            if len(calls) == 1:
                outcomes = [await _outcome(self._record_one(calls[0]))]
            else:
                outcomes = await self._record_batch(calls)
        except BaseException:   # a bug: still answer every caller
            outcomes = [Failure()] * len(calls)
        self.stats["record_job_calls"] += len(calls)
        self.stats["record_job_statements"] += 1
        # Answer first, release the slot after: the calls the callers make now (a submitter's
        # next job) wait and go together in the next batch.
        try:
            for call, outcome in zip(calls, outcomes):
                if isinstance(outcome, Failure):
                    call.deferred.errback(outcome)
                else:
                    call.deferred.callback(outcome)
        finally:
            self._sending -= 1
            self._send_waiting()

    async def _record_one(self, call: _Call):
        """One call alone: `pcnet_record_job`, retried when a twin committed meanwhile."""
        job, charge = call.job, call.charge
        params = job + (charge or (None,) * 8) + (call.guard,)
        for attempt in range(3):
            try:
                rows = await self._pool.runQuery(_RECORD_JOB, params)
                break
            except Exception as e:
                if attempt < 2 and _is_twin(e):
                    continue
                raise self.translate(e) from None
        return await self._result(call, rows[0])

    async def _record_batch(self, calls: list[_Call]) -> list:
        """Several calls as one `pcnet_record_jobs` statement. Returns an outcome (a result or
        a Failure) per call, in order."""
        self.stats["record_job_batches"] += 1
        try:
            items = []
            for i, call in enumerate(calls):
                item = dict(zip(_JOB_KEYS, call.job))
                if call.charge is not None:
                    item.update(zip(_CHARGE_KEYS, call.charge))
                item["guard"] = call.guard
                item["i"] = i
                items.append(item)
            payload = json.dumps(items, separators=(",", ":"))
            rows = await self._pool.runQuery(_RECORD_JOBS, (payload,))
        except Exception as e:
            if _is_gone(e):
                failure = Failure(self.translate(e))
                return [failure] * len(calls)
            # The statement failed as a whole (a value that JSON or the function cannot carry),
            # so nothing of it was written: each call alone then gets exactly its own outcome.
            self.stats["record_job_retried_alone"] += len(calls)
            return await _outcomes([self._record_one(c) for c in calls])
        outcomes: list = [None] * len(calls)
        later = {}
        for row in rows:
            i, job_id, job_existed, txn_id, balance_after, txn_existed, code, message, detail = row
            call = calls[i]
            if code is None:
                if job_existed or txn_existed:
                    later[i] = self._result(
                        call, (job_id, job_existed, txn_id, balance_after, txn_existed))
                else:
                    outcomes[i] = _new_rows(call, job_id, txn_id, balance_after)
            elif code in ("PCN01", "PCN02"):
                # A refused charge or a missing account: the error the call gets alone.
                outcomes[i] = Failure(self._ledger_error(code, message, detail))
            else:
                # A twin that committed meanwhile (unique violation), a deadlock victim, any
                # other error: rolled back alone; the call runs again by itself, which retries
                # twins and raises anything else exactly as a lone call does.
                later[i] = self._record_one(call)
                self.stats["record_job_retried_alone"] += 1
        if len(rows) != len(calls):   # cannot happen: one row per item
            for i, outcome in enumerate(outcomes):
                if outcome is None and i not in later:
                    later[i] = self._record_one(calls[i])
                    self.stats["record_job_retried_alone"] += 1
        if later:
            for i, outcome in zip(later, await _outcomes(later.values())):
                outcomes[i] = outcome
        return outcomes

    async def _result(self, call: _Call, row):
        """(JobRecord, Transaction | None) from a pcnet_record_job(s) row: built from what was
        sent when it was written now, read back when the job (or its charge) existed."""
        job, charge = call.job, call.charge
        job_id, job_existed, txn_id, balance_after, txn_existed = row
        if job_existed:
            # A repeat: what was stored the first time, not what was sent now.
            return await self._run(_queries.stored_job, (job[0],), True)
        if charge is not None and txn_existed:
            # The charge's uuid was used before: the stored ledger row.
            return (job_from_row((job_id,) + job),
                    await self._run(_queries.get_transaction_by_uuid, (charge[0],), True))
        return _new_rows(call, job_id, txn_id, balance_after)

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
            if code in ("PCN01", "PCN02"):
                return self._ledger_error(code, e.diag.message_primary, e.diag.message_detail)
            if code == errorcodes.UNIQUE_VIOLATION:
                return Conflict(f"conflicts with an existing record ({e.diag.constraint_name})")
            if code == errorcodes.FOREIGN_KEY_VIOLATION:
                return NotFound("refers to a record that does not exist")
            if isinstance(e, (psycopg2.InterfaceError, psycopg2.OperationalError)) and _is_dead_error(e):
                return StoreUnavailable(f"PostgreSQL at {self.address}: {self._first_line(e)}")
        if isinstance(e, txpostgres.RollbackFailed):
            return StoreUnavailable(f"PostgreSQL at {self.address}: the connection failed mid-transaction")
        return e

    @staticmethod
    def _ledger_error(code: str, message: str, detail: str) -> PcnetError:
        """The error of pcnet_apply_entry's SQLSTATE PCN01 (insufficient funds; DETAIL:
        account,balance,overdraft,amount) or PCN02 (no such account)."""
        if code == "PCN01":
            account_id, balance, overdraft, amount = (int(x) for x in detail.split(","))
            return _queries.insufficient_funds(account_id, balance, overdraft, amount)
        return NotFound(message)

    def _first_line(self, e) -> str:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return scrub(text, self.dsn) or type(e).__name__


def _is_dead_error(e) -> bool:
    if isinstance(e, psycopg2.InterfaceError):
        return True
    code = e.pgcode
    return code is None or code.startswith("08") or code in ("57P01", "57P02", "57P03")


def _is_gone(e) -> bool:
    """Is the connection gone (rather than the statement failed)?"""
    if isinstance(e, (reconnection.ConnectionDead, txpostgres.RollbackFailed)):
        return True
    return isinstance(e, (psycopg2.InterfaceError, psycopg2.OperationalError)) and _is_dead_error(e)


class _Call:
    """One record_job call: its column values and the Deferred its caller waits on."""

    __slots__ = ("charge", "deferred", "guard", "job")

    def __init__(self, job, charge, guard):
        self.job = job
        self.charge = charge
        self.guard = guard
        self.deferred = Deferred()


def _new_rows(call, job_id, txn_id, balance_after):
    """The result of a job (and charge) written now: built from what was sent."""
    record = job_from_row((job_id,) + call.job)
    charge = call.charge
    if charge is None:
        return record, None
    return record, transaction_from_row((txn_id,) + charge[:3] + (balance_after,) + charge[3:])


async def _outcome(coro):
    """The result of `coro`, or its error as a Failure."""
    try:
        return await coro
    except Exception:
        return Failure()


async def _outcomes(coros) -> list:
    """Run the coroutines concurrently; their results or Failures, in order."""
    results = await DeferredList([Deferred.fromCoroutine(c) for c in coros], consumeErrors=True)
    return [value for _, value in results]


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
