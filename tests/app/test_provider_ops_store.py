"""The provider operations on the real store engines (SQLite and PostgreSQL): charging at print
time, Find-Me prices, offline replay exactly once, expiry, and the store-backed node registry."""

from __future__ import annotations

import uuid as uuidlib
from decimal import Decimal

import pytest_twisted
from twisted.internet import defer, reactor, task
from zope.interface.verify import verifyObject

from pcnet.app.jobs import JobService
from pcnet.app.provider_ops import ProviderOps, StoreNodeRegistry
from pcnet.domain.model import CostModel, Filters, HoldMode, JobStatus
from pcnet.interfaces import INodeRegistry
from pcnet.net.line import Operations
from pcnet.net.registry import NodeStatus

D = Decimal


class Session:
    def __init__(self, node="print01"):
        self.role, self.node, self.connected = "provider", node, True
        self.pushed = []

    def request(self, op, **fields):
        self.pushed.append((op, fields))
        return defer.succeed({})


class Setup:
    async def build(self, store, hold_expiry_hours=24.0):
        self.store = store
        self.jobs = JobService(store, reactor)
        self.session = Session()
        self.ops = ProviderOps(store, self.jobs, reactor, hold_expiry_hours=hold_expiry_hours,
                               sessions={("provider", "print01"): self.session})
        self.handlers = self.ops.register(Operations()).handlers()
        self.alice = await store.create_user("alice", initial_balance=D("10.0000"))
        cm = CostModel(grey=D("0.1000"), colour=D("0.5000"))
        self.secure = await store.create_printer("secure", server="print01", queue="secure",
                                                 cost_model=cm, hold_mode=HoldMode.HOLD, pdl="ps")
        self.findme = await store.create_printer("findme", server="print01", queue="findme",
                                                 cost_model=cm, hold_mode=HoldMode.FIND_ME, pdl="ps")
        self.colour = await store.create_printer(
            "colour", server="print01", queue="colour", pdl="ps", filters=Filters(max_pages=50),
            cost_model=CostModel(grey=D("0.2000"), colour=D("1.0000")))
        return self

    def call(self, op, **fields):
        return self.handlers[op](self.session, fields)

    @staticmethod
    def job(queue, **extra):
        out = dict(uuid=str(uuidlib.uuid4()), queue=queue, user="alice", document_name="doc",
                   pages=4, colour_pages=1, duplex=False, copies=1, paper_size="A4")
        out.update(extra)
        return out

    async def balance(self):
        return (await self.store.get_account(self.alice.personal_account_id)).balance


@pytest_twisted.ensureDeferred
async def test_hold_release_print_charges_once_at_the_find_me_targets_price(store):
    s = await Setup().build(store)
    job = s.job("findme")
    assert (await s.call("job.submit", **job))["action"] == "hold"
    assert await s.balance() == D("10.0000")
    held, total = await s.ops.list_held()
    assert total == 1 and held[0]["uuid"] == job["uuid"]
    await s.ops.release(job["uuid"], printer_id=s.colour.id)
    assert (await store.get_job(job["uuid"])).status is JobStatus.RELEASED
    await s.call("job.printed", uuid=job["uuid"], printer_id=s.colour.id)
    await s.call("job.printed", uuid=job["uuid"], printer_id=s.colour.id)
    assert await s.balance() == D("8.4000")
    stored = await store.get_job(job["uuid"])
    assert stored.status is JobStatus.PRINTED and stored.printer_id == s.colour.id
    assert stored.cost == D("1.6000") and stored.reason == "Find-Me: released from findme"


@pytest_twisted.ensureDeferred
async def test_offline_replay_is_charged_once_and_without_the_guard(store):
    s = await Setup().build(store)
    job = s.job("colour", pages=20, colour_pages=10, printed_at=1_700_000_000)  # 12.00 > 10.00
    first = await s.call("job.offline", **job)
    assert (first["status"], first["cost"]) == ("printed", "12.0000")
    await s.call("job.offline", **job)
    assert await s.balance() == D("-2.0000")


@pytest_twisted.ensureDeferred
async def test_offline_replay_of_a_held_uuid_charges_it_as_printed(store):
    s = await Setup().build(store)
    job = s.job("secure")
    await s.call("job.submit", **job)
    assert (await s.call("job.offline", **job))["status"] == "printed"
    assert await s.balance() == D("9.2000")


@pytest_twisted.ensureDeferred
async def test_held_jobs_expire_and_are_cancelled_on_the_provider(store):
    s = await Setup().build(store, hold_expiry_hours=0.5 / 3600)
    job = s.job("secure")
    await s.call("job.submit", **job)
    await task.deferLater(reactor, 0.7)
    assert await s.ops.expire_due() == 1
    assert (await store.get_job(job["uuid"])).status is JobStatus.EXPIRED
    assert s.session.pushed[-1][0] == "job.cancel"


class Peer:
    def __init__(self, host):
        self.host, self.port = host, 4000


@pytest_twisted.ensureDeferred
async def test_store_node_registry(store):
    registry = StoreNodeRegistry(store, reactor, auto_approve_networks=["10.9.0.0/16"])
    verifyObject(INodeRegistry, registry)
    assert await registry.check("provider", "p1", "secret", Peer("192.0.2.1")) is NodeStatus.PENDING
    assert await registry.check("provider", "p1", "forged", Peer("192.0.2.1")) is NodeStatus.REJECTED
    await store.set_node_status("p1", "approved")
    assert await registry.check("provider", "p1", "secret", Peer("192.0.2.1")) is NodeStatus.APPROVED
    assert await registry.check("provider", "p2", "other", Peer("10.9.3.4")) is NodeStatus.APPROVED
    node = await store.get_node("p1")
    assert node.address == "192.0.2.1" and "secret" not in (node.credential_hash or "")
