"""Fixtures for the admin API tests: a real SQLite store in a temporary directory, the
services over it with a fake provider session, the Print Provider operations, an `AdminApi`
with a controllable clock, an administrator's token and clients."""

from __future__ import annotations

import pytest
import pytest_twisted

from pcnet.app.provider_ops import ProviderOps
from pcnet.app.services import NodeSessions, Services
from pcnet.app.throttle import SignInPolicy, SignInThrottle
from pcnet.domain.secrets import hash_token, new_token
from pcnet.web.api import AdminApi
from tests.fakes import ProviderSession
from tests.support.clock import SteppedReactor, clock_at
from tests.support.db import open_test_store

from ._support import ApiClient

#: 2025-03-12T10:00:00Z, a Wednesday.
T0 = 1741773600.0


@pytest.fixture
def clock():
    return clock_at(T0)


@pytest.fixture
def engine():
    """The store engine; test_postgres.py overrides it to run the smoke tests on PostgreSQL."""
    return "sqlite"


@pytest_twisted.async_yield_fixture
async def store(engine, tmp_path, clock):
    async with open_test_store(engine, tmp_path, reactor=SteppedReactor(clock)) as s:
        yield s


@pytest.fixture
def session():
    """The connected Print Provider "print01" (records what the server pushes to it)."""
    return ProviderSession("print01")


@pytest.fixture
def services(store, clock, session):
    return Services(store, clock, sessions=NodeSessions({("provider", "print01"): session}))


@pytest.fixture
def jobs(services):
    return services.jobs


@pytest.fixture
def ops(services):
    return ProviderOps(services)


@pytest.fixture
def api(services, clock):
    # The clock only moves when a test says so, and the throttle's hash budget refills on it:
    # a budget no test here exhausts (tests/app/test_throttle.py tests the budget itself).
    signin = SignInThrottle(clock, SignInPolicy(hashes_per_second=10_000))
    return AdminApi(services, clock, signin=signin)


@pytest_twisted.async_fixture
async def admin_token(store):
    """A token of an enabled administrator."""
    admin = await store.create_user("root", admin=True, restricted=False)
    token = new_token()
    await store.create_api_token("tests", hash_token(token), user_id=admin.id)
    return token


@pytest.fixture
def client(api, admin_token):
    return ApiClient(api, admin_token)


@pytest.fixture
def anonymous(api):
    return ApiClient(api, None)
