"""Engine life cycle: addresses, migrations, unreachable databases, durability settings, group
commit (SQLite), reconnection (PostgreSQL), stopping."""

import os
import socket
import sqlite3

import psycopg2
import pytest
import pytest_twisted

from pcnet.store import _migrations
from twisted.internet import defer, reactor, task

from pcnet.errors import ConfigError, InsufficientFunds, StoreUnavailable
from pcnet.store import open_store
from pcnet.store._sqlite import qmark, sqlite_path
from tests.support.db import postgres_database, skip_unless_postgres_enabled

from .helpers import D, charge_for, job


async def _start(url, **kw):
    store = open_store(url, reactor=reactor, **kw)
    await store.start()
    return store


# --- addresses ----------------------------------------------------------------------------------

def test_sqlite_addresses():
    assert sqlite_path("sqlite:///var/lib/pcnet/pcnet.db") == "/var/lib/pcnet/pcnet.db"
    assert sqlite_path("sqlite:////var/lib/pcnet/pcnet.db") == "/var/lib/pcnet/pcnet.db"
    assert sqlite_path("sqlite:data/pcnet.db") == "data/pcnet.db"
    assert sqlite_path("sqlite::memory:") == ":memory:"
    with pytest.raises(ValueError):
        sqlite_path("sqlite://host/path")


def test_open_store_chooses_the_engine_from_the_address():
    assert open_store("sqlite::memory:", reactor=reactor).engine == "sqlite"
    assert open_store("postgresql://u@h:5432/db", reactor=reactor).engine == "postgres"
    assert open_store("postgres://u@h/db", reactor=reactor).engine == "postgres"
    assert open_store("host=h port=5432 dbname=db user=u", reactor=reactor).engine == "postgres"
    assert open_store({"url": "sqlite::memory:"}, reactor=reactor).engine == "sqlite"
    for bad in ("mysql://x", "", "pcnet.db", {"pool_size": 3}):
        with pytest.raises(ConfigError):
            open_store(bad, reactor=reactor)


def test_open_store_takes_a_pcnet_config():
    from pcnet import config

    cfg = config.parse('[database]\nurl = "postgresql://pcnet@db1:5433/pcnet"\npool_size = 4\n')
    store = open_store(cfg, reactor=reactor)
    assert store.engine == "postgres" and store._engine._pool_size == 4
    assert store._engine.address == "db1:5433/pcnet"


def test_queries_are_written_once_in_format_paramstyle():
    assert qmark("SELECT * FROM t WHERE a = %s AND b LIKE '%%x' AND c = %s") == \
        "SELECT * FROM t WHERE a = ? AND b LIKE '%x' AND c = ?"


# --- migrations -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_migrations_are_applied_once(db_url):
    engine = "sqlite" if db_url.startswith("sqlite:") else "postgres"
    versions = [v for v, _, _ in _migrations.available(engine)]
    store = await _start(db_url)
    assert store.applied_migrations == versions
    user = await store.create_user("kept", initial_balance=D("1.5"))
    await store.stop()
    store = await _start(db_url)
    try:
        assert store.applied_migrations == []
        assert (await store.get_user_by_name("kept")).id == user.id
        assert (await store.get_account(user.personal_account_id)).balance == D("1.5")
    finally:
        await store.stop()
    rows = _schema_migrations(db_url)
    assert [r[0] for r in rows] == versions and rows[0][1] == "initial" and rows[0][2] > 0


def _schema_migrations(url):
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url))
    else:
        conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        return cur.fetchall()
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_a_database_from_a_newer_pcnet_is_refused(db_url):
    store = await _start(db_url)
    await store.stop()
    if db_url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(db_url))
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 1)")
        conn.commit()
    else:
        conn = psycopg2.connect(db_url)
        conn.cursor().execute("INSERT INTO schema_migrations VALUES (999, 'future', 1)")
        conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable) as e:
        await _start(db_url)
    assert "999" in e.value.message


@pytest_twisted.ensureDeferred
async def test_two_servers_starting_at_once_migrate_once():
    skip_unless_postgres_enabled()
    with postgres_database() as dsn:
        a, b = open_store(dsn, reactor=reactor, pool_size=2), open_store(dsn, reactor=reactor, pool_size=2)
        try:
            applied = await defer.gatherResults([a.start(), b.start()])
            # Each version once, by one server or the other.
            assert sorted(applied[0] + applied[1]) == [v for v, _, _ in _migrations.available("postgres")]
        finally:
            await a.stop()
            await b.stop()


# --- unreachable databases --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_unreachable_postgres_names_host_and_port_but_no_password():
    for address in ("postgresql://pcnet:s3cret-pw@127.0.0.1:1/pcnet",
                    "host=127.0.0.1 port=1 dbname=pcnet user=pcnet password=s3cret-pw"):
        store = open_store(address, reactor=reactor)
        with pytest.raises(StoreUnavailable) as e:
            await store.start()
        assert "127.0.0.1:1" in e.value.message and "s3cret" not in e.value.message
        with pytest.raises(StoreUnavailable):
            await store.get_user(1)
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_a_silent_postgres_times_out():
    """A server that accepts TCP but never answers must not hang start-up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        store = open_store(f"postgresql://pcnet@127.0.0.1:{port}/pcnet", reactor=reactor)
        store._engine.connect_timeout = 0.3
        with pytest.raises(StoreUnavailable) as e:
            await store.start()
        assert f"127.0.0.1:{port}" in e.value.message
    finally:
        listener.close()


@pytest_twisted.ensureDeferred
async def test_unopenable_sqlite_names_the_file(tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "pcnet.db"
    a_directory = tmp_path / "adir"
    a_directory.mkdir()
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a database, just some text " * 200)
    for path in (missing_dir, a_directory, not_a_db):
        store = open_store(f"sqlite:///{path}", reactor=reactor)
        with pytest.raises(StoreUnavailable) as e:
            await store.start()
        assert str(path) in e.value.message
        with pytest.raises(StoreUnavailable):
            await store.get_user(1)
        await store.stop()


# --- SQLite specifics ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_sqlite_in_memory_works_with_the_one_thread_design():
    store = await _start("sqlite::memory:")
    try:
        user = await store.create_user("mem", initial_balance=D(2))
        assert (await store.get_user_by_name("mem")).id == user.id
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_is_wal_synchronous_full_with_foreign_keys(tmp_path):
    store = await _start(f"sqlite:///{tmp_path}/p.db")

    async def pragmas(txn):
        out = {}
        for name in ("journal_mode", "synchronous", "foreign_keys"):
            await txn.execute(f"PRAGMA {name}")
            out[name] = txn.fetchone()[0]
        return out

    try:
        assert await store._engine.run(pragmas) == {"journal_mode": "wal", "synchronous": 2,
                                                    "foreign_keys": 1}
    finally:
        await store.stop()
    assert os.path.exists(f"{tmp_path}/p.db")


@pytest_twisted.ensureDeferred
async def test_sqlite_group_commit_shares_commits_and_failures_stay_alone(tmp_path):
    store = await _start(f"sqlite:///{tmp_path}/p.db")
    try:
        rich = await store.create_user("rich", initial_balance=D(1000))
        poor = await store.create_user("poor", initial_balance=D("0.1"))
        printer = await store.create_printer("P")
        before = dict(store._engine.stats)
        jobs = [job(rich if i % 10 else poor, printer, cost="0.5") for i in range(200)]
        results = await defer.DeferredList([store.record_job(j, charge_for(j)) for j in jobs],
                                           consumeErrors=True)
        stats = store._engine.stats
        interactions = stats["interactions"] - before["interactions"]
        commits = stats["commits"] - before["commits"]
        assert interactions == 200 and commits < 50, stats
        for j, (ok, value) in zip(jobs, results):
            if j.user_id == poor.id:
                assert not ok and value.check(InsufficientFunds)
            else:
                assert ok and value[0].uuid == j.uuid
        assert (await store.get_account(rich.personal_account_id)).balance == D(1000) - D("0.5") * 180
        assert (await store.get_account(poor.personal_account_id)).balance == D("0.1")
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_the_reactor_thread_never_runs_sqlite(tmp_path):
    import threading

    store = await _start(f"sqlite:///{tmp_path}/p.db")
    seen = []

    async def where(txn):
        seen.append(threading.current_thread())
        await txn.execute("SELECT 1")

    try:
        await store._engine.run(where)
        assert seen and seen[0] is not threading.current_thread()
        assert seen[0].name.startswith("pcnet-sqlite")
    finally:
        await store.stop()


# --- stopping -----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_stop_finishes_pending_writes_then_refuses_new_ones(db_url):
    store = await _start(db_url)
    user = await store.create_user("stopper", initial_balance=D(100))
    printer = await store.create_printer("P")
    jobs = [job(user, printer, cost="1") for _ in range(40)]
    pending = [store.record_job(j, charge_for(j)) for j in jobs]
    await store.stop()
    results = await defer.gatherResults(pending)
    assert len(results) == 40
    with pytest.raises(StoreUnavailable):
        await store.get_user(user.id)
    store = await _start(db_url)
    try:
        assert (await store.get_account(user.personal_account_id)).balance == D(60)
    finally:
        await store.stop()


# --- PostgreSQL reconnection ------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_postgres_connections_come_back_after_the_server_drops_them():
    skip_unless_postgres_enabled()
    with postgres_database() as dsn:
        store = await _start(dsn, pool_size=3)
        try:
            user = await store.create_user("phoenix")
            name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
            admin = psycopg2.connect(dsn)
            admin.autocommit = True
            admin.cursor().execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'pcnet'", (name,))
            admin.close()
            failures = 0
            for _ in range(100):
                try:
                    assert (await store.get_user(user.id)).username == "phoenix"
                    await store.create_group(f"g{_}")
                    break
                except StoreUnavailable as e:
                    assert "127.0.0.1:5432" in e.message
                    failures += 1
                    await task.deferLater(reactor, 0.05, lambda: None)
            else:
                pytest.fail("the store did not reconnect")
            # Every pooled connection recovers.
            for i in range(20):
                await store.get_user(user.id)
        finally:
            await store.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_writer_survives_an_interaction_that_breaks_its_transaction(tmp_path):
    """If the transaction of a batch is lost (SQLite rolls it back on an I/O error or a full
    disk), every interaction of the batch fails, none is acknowledged, and the writer goes on."""
    store = await _start(f"sqlite:///{tmp_path}/p.db")

    async def good(txn, name):
        await txn.execute("INSERT INTO groups (name, created_at) VALUES (%s, 0)", (name,))

    async def loses_the_transaction(txn):
        await txn.execute("ROLLBACK")
        raise OSError("disk I/O error (simulated)")

    async def ends_the_transaction(txn):
        await txn.execute("COMMIT")

    try:
        for evil in (loses_the_transaction, ends_the_transaction):
            results = await defer.DeferredList(
                [store._engine.run(good, f"{evil.__name__}-a"), store._engine.run(evil),
                 store._engine.run(good, f"{evil.__name__}-b")], consumeErrors=True)
            assert [ok for ok, _ in results] == [False, False, False]
            if evil is loses_the_transaction:
                assert await store.list_groups() == []
        assert (await store.create_group("after")).name == "after"
    finally:
        await store.stop()
