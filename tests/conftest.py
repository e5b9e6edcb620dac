"""Fixtures shared by the whole suite: every test that uses `store` runs once per engine.

The PostgreSQL variant creates a uniquely named database on the test server and drops it
afterwards (see tests/support/db.py); it errors if the server is unreachable, unless
PCNET_TEST_POSTGRES=0 is set.
"""

import pytest
import pytest_twisted

from tests.support.db import ENGINES, database_url, skip_unless_postgres_enabled


@pytest.fixture(params=ENGINES)
def engine(request):
    if request.param == "postgres":
        skip_unless_postgres_enabled()
    return request.param


@pytest.fixture
def db_url(engine, tmp_path):
    """The address of a fresh, empty database. A plain fixture on purpose: when an async
    pytest-twisted fixture fails before its yield, later tests using it break too, so the part
    that can fail (reaching PostgreSQL) happens here."""
    with database_url(engine, tmp_path) as url:
        yield url


@pytest_twisted.async_yield_fixture
async def store(db_url):
    from twisted.internet import reactor

    from pcnet.store import open_store

    s = open_store(db_url, reactor=reactor)
    await s.start()
    yield s
    await s.stop()
