"""Databases for tests: a fresh SQLite file or a fresh PostgreSQL database per test.

PostgreSQL tests RUN by default, against the server at `PCNET_TEST_POSTGRES_ADMIN`
(default `postgresql://postgres@127.0.0.1:5432/postgres`, trust authentication): each test gets
a uniquely named database, dropped afterwards. If that server cannot be reached the test
ERRORS (CI must not pass by skipping the PostgreSQL half); set `PCNET_TEST_POSTGRES=0` to skip
the PostgreSQL variants explicitly on a machine without one.

    from tests.support.db import ENGINES, database_url

    @pytest.fixture(params=ENGINES)
    def db_url(request, tmp_path):          # a plain fixture: see below
        with database_url(request.param, tmp_path) as url:
            yield url

    @pytest_twisted.async_yield_fixture
    async def store(db_url):
        store = open_store(db_url, reactor=reactor)
        await store.start()
        yield store
        await store.stop()

Create the database in a plain (sync) fixture, as above: when a pytest-twisted async fixture
fails before its `yield` (PostgreSQL unreachable), every later test using that fixture errors
too, SQLite ones included. `open_test_store` (an async context manager) suits tests that open
their own store.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

#: Engines every store test runs on.
ENGINES = ("sqlite", "postgres")

POSTGRES_ADMIN = os.environ.get(
    "PCNET_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_enabled() -> bool:
    """False only when PCNET_TEST_POSTGRES=0 says so explicitly."""
    return os.environ.get("PCNET_TEST_POSTGRES", "1").strip().lower() not in ("0", "false", "no", "off")


def skip_unless_postgres_enabled() -> None:
    if not postgres_enabled():
        pytest.skip("PostgreSQL tests disabled by PCNET_TEST_POSTGRES=0")


def _admin():
    import psycopg2

    try:
        conn = psycopg2.connect(POSTGRES_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as e:
        raise RuntimeError(
            f"PostgreSQL for tests is unreachable at {POSTGRES_ADMIN}: {str(e).strip()}. Start"
            " it, point PCNET_TEST_POSTGRES_ADMIN at one, or set PCNET_TEST_POSTGRES=0 to skip"
            " the PostgreSQL tests.") from None
    conn.autocommit = True
    return conn


def _with_dbname(dsn: str, dbname: str) -> str:
    from psycopg2 import extensions

    params = extensions.parse_dsn(dsn)
    params["dbname"] = dbname
    return extensions.make_dsn(**params)


def create_postgres_database(prefix: str = "pcnet_test") -> str:
    """Create an empty, uniquely named database; returns its libpq address."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return _with_dbname(POSTGRES_ADMIN, name)


def drop_postgres_database(dsn: str) -> None:
    from psycopg2 import extensions

    name = extensions.parse_dsn(dsn)["dbname"]
    conn = _admin()
    try:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def postgres_url(dsn: str, *, password: str | None = None) -> str:
    """The `postgresql://` URL of a libpq address (what pcnet's configuration takes), with
    `password` written into it if given."""
    from urllib.parse import quote

    from psycopg2 import extensions

    p = extensions.parse_dsn(dsn)
    user = quote(p.get("user", "postgres"), safe="")
    if password is not None:
        user += ":" + quote(password, safe="")
    return (f"postgresql://{user}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}"
            f"/{p['dbname']}")


@contextlib.contextmanager
def postgres_database(prefix: str = "pcnet_test"):
    """A fresh database for the duration of the block."""
    dsn = create_postgres_database(prefix)
    try:
        yield dsn
    finally:
        drop_postgres_database(dsn)


def sqlite_url(directory) -> str:
    return f"sqlite:///{os.path.abspath(os.fspath(directory))}/pcnet.db"


@contextlib.contextmanager
def database_url(engine: str, directory):
    """The address of a fresh, empty database of this engine ("sqlite" or "postgres")."""
    if engine == "sqlite":
        yield sqlite_url(directory)
    elif engine == "postgres":
        skip_unless_postgres_enabled()
        with postgres_database() as dsn:
            yield dsn
    else:
        raise ValueError(f"unknown engine {engine!r}")


@contextlib.asynccontextmanager
async def open_test_store(engine: str, directory, *, reactor=None, **kwargs):
    """A started store on a fresh database; stopped (and the database dropped) afterwards."""
    from pcnet.store import open_store

    if reactor is None:
        from twisted.internet import reactor
    with database_url(engine, directory) as url:
        store = open_store(url, reactor=reactor, **kwargs)
        await store.start()
        try:
            yield store
        finally:
            await store.stop()
