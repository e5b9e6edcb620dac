"""Hearing other writers: a store's change listener tells this process what another connection
(another process: a `pcnet` command, a second server) committed, on both engines; the schema
status and the pool figures health and metrics read.

The "other process" is a second `Store` on the same database: its own connection, as another
process would have. The listener's own process (the `store` fixture) writes too, and on SQLite
those writes are not reported (data_version moves for other connections only)."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, reactor, task

from pcnet.domain.model import CostModel, LedgerEntry, TransactionKind
from pcnet.store import open_store

from .helpers import D, charge_for, job


class Heard:
    def __init__(self):
        self.batches = []
        self.waiting = []

    def __call__(self, changes):
        self.batches.append(changes)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    def changes(self):
        return [c for b in self.batches if b is not None for c in b]

    async def until(self, predicate, timeout=15.0):
        """Wait (bounded) until predicate(self) holds."""
        deadline = reactor.seconds() + timeout
        while not predicate(self):
            if reactor.seconds() > deadline:
                raise AssertionError(f"not heard in {timeout} s: {self.batches!r}")
            d = defer.Deferred()
            self.waiting.append(d)
            d.addTimeout(0.5, reactor).addErrback(lambda f: None)
            await d


@pytest_twisted.async_yield_fixture
async def other(db_url):
    """A second store on the same database: another process's connection."""
    s = open_store(db_url, reactor=reactor)
    await s.start()
    yield s
    await s.stop()


async def listening(store):
    heard = Heard()
    listener = store.change_listener(reactor, interval=0.05)
    await listener.start(heard)
    if store.engine == "postgres":
        # The first LISTEN is followed by "anything may have changed" (None).
        await heard.until(lambda h: None in h.batches)
    return listener, heard


@pytest_twisted.ensureDeferred
async def test_another_connections_printer_change_is_heard_with_its_id_and_name(store, other):
    printer = await store.create_printer("lab", cost_model=CostModel(grey=D("0.10")))
    listener, heard = await listening(store)
    try:
        await other.update_printer(printer.id, cost_model=CostModel(grey=D("0.20")))
        await heard.until(lambda h: any(c.table == "printers" for c in h.changes()))
        change = next(c for c in heard.changes() if c.table == "printers")
        assert (change.key, change.name) == (str(printer.id), "lab")
        assert change.op in ("update", "insert")
    finally:
        listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_new_user_and_a_deleted_card_of_another_writer_are_heard(store, other):
    listener, heard = await listening(store)
    try:
        user = await other.create_user("zoe", card_numbers=["Z1"])
        await heard.until(lambda h: any(c.table == "users" for c in h.changes()))
        users = [c for c in heard.changes() if c.table == "users"]
        assert users[-1].key == str(user.id) and users[-1].name == "zoe"
        await other.update_user(user.id, card_numbers=())
        await heard.until(lambda h: any(c.table == "cards" and c.op == "delete"
                                        for c in h.changes()))
    finally:
        listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_top_up_is_heard_but_a_charge_is_not_notified_on_postgres(store, other):
    """A balance another server raised must reach every server's cache; one it lowered is
    caught by the charging transaction's guard, and notifying every charge would serialise
    the hot path's commits (PostgreSQL). On SQLite the feed tells both (cheap there)."""
    user = await store.create_user("amy", initial_balance=D(5))
    printer = await store.create_printer("p")
    listener, heard = await listening(store)
    try:
        charged = job(user, printer, cost=D("0.50"))
        await other.record_job(charged, charge_for(charged), guard=True)
        await other.apply_ledger_entry(LedgerEntry(
            uuid="top-up-1", account_id=user.personal_account_id, amount=D(2),
            kind=TransactionKind.ADJUST, comment="top-up"))
        await heard.until(lambda h: any(c.table == "accounts" for c in h.changes()))
        accounts = [c for c in heard.changes() if c.table == "accounts"]
        assert {c.key for c in accounts} == {str(user.personal_account_id)}
        if store.engine == "postgres":
            assert len(accounts) == 1   # the top-up; the charge said nothing
    finally:
        listener.stop()


@pytest_twisted.ensureDeferred
async def test_this_processes_own_writes_are_not_reported_on_sqlite(store, other):
    if store.engine != "sqlite":
        return  # PostgreSQL notifies every writer, this one too: the caches forget twice
    listener, heard = await listening(store)
    try:
        await store.create_printer("mine")
        await listener.check()
        assert heard.changes() == []
        await other.create_printer("theirs")
        await listener.check()
        assert [c.name for c in heard.changes() if c.table == "printers"] == ["theirs"]
    finally:
        listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_lost_listening_connection_is_remade_and_says_anything_may_have_changed(
        store, other, engine):
    """PostgreSQL: the listening connection is killed (as a server restart or fail-over would);
    the listener listens again and delivers None (forget everything), then hears writes again."""
    if engine != "postgres":
        return
    import psycopg2

    listener, heard = await listening(store)
    listener.probe_interval = 0.2
    try:
        before = len(heard.batches)
        conn = psycopg2.connect(store._engine.dsn)
        conn.autocommit = True
        conn.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE application_name = 'pcnet-watch' AND datname = current_database()")
        conn.close()
        await heard.until(lambda h: None in h.batches[before:])
        assert listener.connected
        await other.create_printer("after-the-cut")
        await heard.until(lambda h: any(c.name == "after-the-cut" for c in h.changes()))
    finally:
        listener.stop()


@pytest_twisted.ensureDeferred
async def test_schema_status_says_every_migration_is_applied(store):
    status = await store.schema_status()
    assert status.current and status.version == status.latest >= 3


@pytest_twisted.ensureDeferred
async def test_pool_stats_count_connections_and_waiting_work(store):
    stats = store.pool_stats()
    assert set(stats) == {"size", "in_use", "waiting"}
    assert stats["size"] >= 1 and 0 <= stats["in_use"] <= stats["size"]
    await task.deferLater(reactor, 0)


@pytest_twisted.ensureDeferred
async def test_another_writers_change_of_the_site_offline_policy_is_heard(store, other):
    """The Site Server's offline policy is replicated: a change made elsewhere (a second
    server, a `pcnet` command) reaches this process's watcher as the policy's one row."""
    from dataclasses import replace

    from pcnet.app.watch import events_for

    listener, heard = await listening(store)
    try:
        policy = await other.get_offline_policy()
        await other.set_offline_policy(replace(policy, password_auth_offline=False))
        await heard.until(lambda h: any(c.table == "offline_policy" for c in h.changes()))
        change = next(c for c in heard.changes() if c.table == "offline_policy")
        assert change.key == "1"
        [event] = events_for([change])
        assert (event.kind, event.id, event.local) == ("offline_policy", 1, False)
    finally:
        listener.stop()


@pytest_twisted.ensureDeferred
async def test_every_replicated_table_is_watched_and_the_audit_log_is_not(store):
    """Every table in the change feed (it has a change_seq) has a change kind for the watcher
    and, on PostgreSQL, a trigger that notifies its writes; the audit log is not replicated
    (nothing caches it), so it has neither."""
    from pcnet.app.watch import TABLE_KINDS

    if store.engine == "postgres":
        import psycopg2

        conn = psycopg2.connect(store._engine.dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT table_name FROM information_schema.columns"
                        " WHERE column_name = 'change_seq' AND table_schema = 'public'")
            replicated = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                        " JOIN pg_proc p ON p.oid = t.tgfoid"
                        " WHERE p.proname = 'pcnet_notify_change'")
            notified = {r[0] for r in cur.fetchall()}
        finally:
            conn.close()
        assert replicated <= notified, f"not notified: {sorted(replicated - notified)}"
        assert "audit_log" not in notified
    else:
        import sqlite3

        conn = sqlite3.connect(store._engine.path)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            replicated = {t for t in tables
                          if any(col[1] == "change_seq" for col in conn.execute(f"PRAGMA table_info({t})"))}
        finally:
            conn.close()
    assert "offline_policy" in replicated and "audit_log" not in replicated
    assert replicated <= set(TABLE_KINDS), f"no change kind: {sorted(replicated - set(TABLE_KINDS))}"
