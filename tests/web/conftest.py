"""Fixtures for the admin API tests: a real SQLite store in a temporary directory, the job
service, the Print Provider operations with a fake provider session, an `AdminApi` with a
controllable clock, an administrator's token and clients."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from twisted.internet import defer

from pcnet.app.jobs import JobService
from pcnet.app.provider_ops import ProviderOps
from pcnet.app.throttle import SignInPolicy, SignInThrottle
from pcnet.domain.secrets import hash_token, new_token
from pcnet.web.api import AdminApi
from tests.support.db import open_test_store

from ._support import ApiClient

#: 2025-03-12T10:00:00Z, a Wednesday.
T0 = 1741773600.0


class SteppedReactor:
    """The real reactor (threads, timers) telling the time of a `task.Clock`, so that the
    store, the job service and the API agree on a time the test controls."""

    def __init__(self, clock: Clock):
        self._clock = clock

    def seconds(self) -> float:
        return self._clock.seconds()

    def __getattr__(self, name):
        return getattr(reactor, name)


@pytest.fixture
def clock():
    c = Clock()
    c.advance(T0)
    return c


@pytest.fixture
def engine():
    """The store engine; test_postgres.py overrides it to run the smoke tests on PostgreSQL."""
    return "sqlite"


@pytest_twisted.async_yield_fixture
async def store(engine, tmp_path, clock):
    async with open_test_store(engine, tmp_path, reactor=SteppedReactor(clock)) as s:
        yield s


@pytest.fixture
def jobs(store, clock):
    return JobService(store, clock)


class ProviderSession:
    """A connected Print Provider "print01" that records what the server pushes to it and
    answers every push (with `answers[op](fields)` if set, else `{}`), or fails with
    `fail_with`."""

    def __init__(self):
        self.role, self.node, self.connected = "provider", "print01", True
        self.pushed = []
        self.fail_with = None
        self.answers = {}

    def request(self, op, **fields):
        self.pushed.append((op, fields))
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        answer = self.answers.get(op)
        return defer.succeed(answer(fields) if answer is not None else {})


@pytest.fixture
def session():
    return ProviderSession()


@pytest.fixture
def ops(store, jobs, clock, session):
    return ProviderOps(store, jobs, clock, sessions={("provider", "print01"): session})


@pytest.fixture
def api(store, jobs, clock, ops):
    # The clock only moves when a test says so, and the throttle's hash budget refills on it:
    # a budget no test here exhausts (tests/app/test_throttle.py tests the budget itself).
    signin = SignInThrottle(clock, SignInPolicy(hashes_per_second=10_000))
    return AdminApi(store, jobs, clock, provider_ops=ops, signin=signin)


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
