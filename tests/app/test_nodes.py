"""Nodes (Print Providers, Site Servers, device gateways) on the real store engines: the
enrolment rules the store-backed registry applies at every hello, and what administrators do
through the node service (invite, approve, reject, delete), audited, closing connections."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from zope.interface.verify import verifyObject

from pcnet.app.services import SYSTEM, NodeSessions, Services
from pcnet.errors import NotFound
from pcnet.interfaces import INodeRegistry
from pcnet.net.registry import NodeStatus
from tests.fakes import ProviderSession, peer


def node_services(store, clock=reactor, sessions=None, **registry):
    services = Services(store, clock, sessions=sessions)
    return services.nodes, services.nodes.registry(**registry)


@pytest_twisted.ensureDeferred
async def test_a_node_name_cannot_be_squatted(store):
    """The finding: whoever said hello first owned a name, the real provider was then rejected
    and approving admitted the squatter. Now hellos without the administrator's code are refused
    and leave nothing, and the code goes to whoever the administrator gave it to."""
    nodes, registry = node_services(store)
    verifyObject(INodeRegistry, registry)
    squatter, real = peer("198.51.100.66"), peer("192.0.2.1")
    for i in range(250):
        assert await registry.check("provider", f"print{i:02}", "squat", squatter) is NodeStatus.REJECTED
    assert await store.list_nodes() == []

    code, invitation = await nodes.invite(SYSTEM, "print01", "provider")
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
    nodes, registry = node_services(store, clock)
    code, _ = await nodes.invite(SYSTEM, "p1", "provider", hours=1)
    assert await registry.check("site", "p1", "c", peer("192.0.2.1"), code) is NodeStatus.REJECTED
    site_code, site = await nodes.invite(SYSTEM, "site-a", "site")
    assert not site.approve  # a Site Server waits for an administrator after enrolling
    assert await registry.check("site", "site-a", "c", peer("192.0.2.2"), site_code) is NodeStatus.PENDING
    await nodes.approve(SYSTEM, "site-a")
    assert await registry.check("site", "site-a", "c", peer("192.0.2.2")) is NodeStatus.APPROVED
    # Issued an hour and a bit ago, valid for an hour: expired (the store judges by its clock).
    earlier = task.Clock()
    earlier.advance(reactor.seconds() - 3700)
    old_code, _ = await node_services(store, earlier)[0].invite(SYSTEM, "p2", "provider", hours=1)
    assert await registry.check("provider", "p2", "c", peer("192.0.2.3"), old_code) is NodeStatus.REJECTED
    assert [n.name for n in await store.list_nodes()] == ["site-a"]


@pytest_twisted.ensureDeferred
async def test_auto_approve_networks_still_enrol_without_a_code(store):
    _, registry = node_services(store, auto_approve_networks=["10.9.0.0/16"])
    assert await registry.check("provider", "p2", "other", peer("10.9.3.4")) is NodeStatus.APPROVED
    assert (await store.get_node("p2")).status == "approved"
    assert await registry.check("provider", "p2", "forged", peer("10.9.3.5")) is NodeStatus.REJECTED


@pytest_twisted.ensureDeferred
async def test_deleting_or_rejecting_a_node_closes_its_connection_and_delete_frees_the_name(store):
    live = {("provider", "p1"): ProviderSession("p1"), ("provider", "p2"): ProviderSession("p2")}
    nodes, registry = node_services(store, sessions=NodeSessions(live),
                                    auto_approve_networks=["10.0.0.0/8"])
    for name in ("p1", "p2"):
        await registry.check("provider", name, "c", peer("10.0.0.1"))
    assert nodes.connected() == [("provider", "p1"), ("provider", "p2")]
    await nodes.reject(SYSTEM, "p1")
    assert live["provider", "p1"].aborted == ["rejected by an administrator"]
    assert live["provider", "p2"].aborted == []
    assert nodes.connected() == [("provider", "p2")]
    await nodes.delete(SYSTEM, "p2")
    assert live["provider", "p2"].aborted == ["deleted by an administrator"]
    with pytest.raises(NotFound):
        await store.get_node("p2")
    # The name is free: a new machine enrols with a new code (not from the LAN this time).
    code, _ = await nodes.invite(SYSTEM, "p2", "provider")
    assert await registry.check("provider", "p2", "new", peer("192.0.2.9"), code) is NodeStatus.APPROVED
    # A rejected node may be let in again with a new invitation.
    code, _ = await nodes.invite(SYSTEM, "p1", "provider")
    assert await registry.check("provider", "p1", "c", peer("192.0.2.9"), code) is NodeStatus.APPROVED
    with pytest.raises(NotFound):
        await nodes.delete(SYSTEM, "nope")
    actions = [e.action for e in (await store.list_audit())[0]]
    assert actions == ["node.invite", "node.invite", "node.delete", "node.reject"]


@pytest_twisted.ensureDeferred
async def test_the_registry_logs_enrolments_and_refusals_without_secrets(store):
    from twisted.logger import capturedLogs

    nodes, registry = node_services(store)
    code, _ = await nodes.invite(SYSTEM, "p1", "provider")
    with capturedLogs() as events:
        await registry.check("provider", "p1", "credential-XYZZY", peer("192.0.2.1"), code)
        await registry.check("provider", "p9", "credential-XYZZY", peer("192.0.2.1"), "code-XYZZY")
    text = " ".join(str(e.get("log_format", "")) + repr(e) for e in events)
    assert "enrolled with an enrolment code" in text and "not valid" in text
    assert "XYZZY" not in text and code not in text
