"""Fixtures shared by the whole suite.

`store` is a real, started store, once per engine (SQLite in a temp dir and a fresh PostgreSQL
database on 127.0.0.1:5432; see tests/support/db.py).
"""

import pytest
import pytest_twisted

from tests.support.db import ENGINES, open_test_store, skip_unless_postgres_enabled


@pytest.fixture(params=ENGINES)
def engine(request):
    if request.param == "postgres":
        skip_unless_postgres_enabled()
    return request.param


@pytest_twisted.async_yield_fixture
async def store(engine, tmp_path):
    async with open_test_store(engine, tmp_path) as s:
        yield s
