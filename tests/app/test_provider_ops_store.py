"""The provider operations on the real store engines (SQLite and PostgreSQL): charging at print
time, Find-Me prices, offline replay exactly once, expiry, and the store-backed node registry."""

from __future__ import annotations

import uuid as uuidlib
from decimal import Decimal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from zope.interface.verify import verifyObject

from pcnet.app.jobs import JobService
from pcnet.app.provider_ops import ProviderOps, StoreNodeRegistry
from pcnet.domain.model import CostModel, Filters, HoldMode, JobStatus
from pcnet.errors import NotFound
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


class LiveSession:
    def __init__(self):
        self.aborted = None

    def abort(self, why):
        self.aborted = why


@pytest_twisted.ensureDeferred
async def test_a_node_name_cannot_be_squatted(store):
    """The finding: whoever said hello first owned a name, the real provider was then rejected
    and approving admitted the squatter. Now hellos without the administrator's code are refused
    and leave nothing, and the code goes to whoever the administrator gave it to."""
    registry = StoreNodeRegistry(store, reactor)
    verifyObject(INodeRegistry, registry)
    squatter, real = Peer("198.51.100.66"), Peer("192.0.2.1")
    for i in range(250):
        assert await registry.check("provider", f"print{i:02}", "squat", squatter) is NodeStatus.REJECTED
    assert await store.list_nodes() == []

    code, invitation = await registry.invite("print01", "provider")
    assert invitation.approve and code not in repr(invitation)
    assert (await store.list_node_invitations())[0].code_hash != code  # only its hash is kept
    assert await registry.check("provider", "print01", "squat", squatter) is NodeStatus.REJECTED
    assert await registry.check("provider", "print01", "squat", squatter, "guess") is NodeStatus.REJECTED
    assert await registry.check("provider", "print01", "real", real, code) is NodeStatus.APPROVED
    # Spent: the squatter cannot reuse it, the real node still gets in (with or without it).
    assert await registry.check("provider", "print01", "squat", squatter, code) is NodeStatus.REJECTED
    assert await registry.check("provider", "print01", "real", real, code) is NodeStatus.APPROVED
    assert await registry.check("provider", "print01", "real", real) is NodeStatus.APPROVED
    node = await store.get_node("print01")
    assert node.address == "192.0.2.1" and "real" not in (node.credential_hash or "")
    assert [n.name for n in await store.list_nodes()] == ["print01"]


@pytest_twisted.ensureDeferred
async def test_invitations_expire_and_respect_role_and_approval(store):
    clock = task.Clock()
    clock.advance(reactor.seconds())  # the store stamps with the real clock
    registry = StoreNodeRegistry(store, clock)
    code, _ = await registry.invite("p1", "provider", hours=1)
    assert await registry.check("site", "p1", "c", Peer("192.0.2.1"), code) is NodeStatus.REJECTED
    site_code, site = await registry.invite("site-a", "site")
    assert not site.approve  # a Site Server waits for an administrator after enrolling
    assert await registry.check("site", "site-a", "c", Peer("192.0.2.2"), site_code) is NodeStatus.PENDING
    await registry.set_status("site-a", NodeStatus.APPROVED)
    assert await registry.check("site", "site-a", "c", Peer("192.0.2.2")) is NodeStatus.APPROVED
    # Issued an hour and a bit ago, valid for an hour: expired (the store judges by its clock).
    earlier = task.Clock()
    earlier.advance(reactor.seconds() - 3700)
    old_code, _ = await StoreNodeRegistry(store, earlier).invite("p2", "provider", hours=1)
    assert await registry.check("provider", "p2", "c", Peer("192.0.2.3"), old_code) is NodeStatus.REJECTED
    assert [n.name for n in await store.list_nodes()] == ["site-a"]


@pytest_twisted.ensureDeferred
async def test_auto_approve_networks_still_enrol_without_a_code(store):
    registry = StoreNodeRegistry(store, reactor, auto_approve_networks=["10.9.0.0/16"])
    assert await registry.check("provider", "p2", "other", Peer("10.9.3.4")) is NodeStatus.APPROVED
    assert (await store.get_node("p2")).status == "approved"
    assert await registry.check("provider", "p2", "forged", Peer("10.9.3.5")) is NodeStatus.REJECTED


@pytest_twisted.ensureDeferred
async def test_deleting_or_rejecting_a_node_closes_its_connection_and_delete_frees_the_name(store):
    registry = StoreNodeRegistry(store, reactor, auto_approve_networks=["10.0.0.0/8"])
    live = {("provider", "p1"): LiveSession(), ("provider", "p2"): LiveSession()}

    class Factory:
        sessions = live

    registry.attach(Factory())
    for name in ("p1", "p2"):
        await registry.check("provider", name, "c", Peer("10.0.0.1"))
    await registry.set_status("p1", NodeStatus.REJECTED)
    assert live["provider", "p1"].aborted == "rejected by an administrator"
    assert live["provider", "p2"].aborted is None
    await registry.delete("p2")
    assert live["provider", "p2"].aborted == "deleted by an administrator"
    with pytest.raises(NotFound):
        await store.get_node("p2")
    # The name is free: a new machine enrols with a new code (not from the LAN this time).
    code, _ = await registry.invite("p2", "provider")
    assert await registry.check("provider", "p2", "new", Peer("192.0.2.9"), code) is NodeStatus.APPROVED
    # A rejected node may be let in again with a new invitation.
    code, _ = await registry.invite("p1", "provider")
    assert await registry.check("provider", "p1", "c", Peer("192.0.2.9"), code) is NodeStatus.APPROVED
    with pytest.raises(NotFound):
        await registry.delete("nope")


@pytest_twisted.ensureDeferred
async def test_the_registry_logs_enrolments_and_refusals_without_secrets(store):
    from twisted.logger import capturedLogs

    registry = StoreNodeRegistry(store, reactor)
    code, _ = await registry.invite("p1", "provider")
    with capturedLogs() as events:
        await registry.check("provider", "p1", "credential-XYZZY", Peer("192.0.2.1"), code)
        await registry.check("provider", "p9", "credential-XYZZY", Peer("192.0.2.1"), "code-XYZZY")
    text = " ".join(str(e.get("log_format", "")) + repr(e) for e in events)
    assert "enrolled with an enrolment code" in text and "not valid" in text
    assert "XYZZY" not in text and code not in text
