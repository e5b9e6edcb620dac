"""Node approval: NodeStatus and the in-memory INodeRegistry."""

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from zope.interface.verify import verifyObject

from pcnet.interfaces import INodeRegistry
from pcnet.net.registry import MemoryNodeRegistry, NodeStatus, new_credential, peer_ip

from ._support import result_of

LAN = IPv4Address("TCP", "10.1.2.3", 5000)
WAN = IPv4Address("TCP", "203.0.113.9", 5000)


def test_memory_registry_provides_the_interface():
    verifyObject(INodeRegistry, MemoryNodeRegistry())


def test_check_returns_a_deferred_status():
    reg = MemoryNodeRegistry()
    reg.add("provider", "p1", "cred")
    assert result_of(reg.check("provider", "p1", "cred", LAN)) is NodeStatus.APPROVED


def test_first_contact_is_pending_then_approved_by_an_administrator():
    reg = MemoryNodeRegistry()
    assert reg.check_now("site", "s1", "cred", WAN) is NodeStatus.PENDING
    assert reg.check_now("site", "s1", "cred", WAN) is NodeStatus.PENDING
    reg.approve("site", "s1")
    assert reg.check_now("site", "s1", "cred", WAN) is NodeStatus.APPROVED
    assert reg.nodes()[0].describe() == {
        "role": "site", "node": "s1", "status": "approved", "last_address": "203.0.113.9"
    }


def test_the_credential_seen_first_is_the_only_one_accepted():
    reg = MemoryNodeRegistry()
    reg.check_now("provider", "p1", "first", WAN)
    assert reg.check_now("provider", "p1", "second", WAN) is NodeStatus.REJECTED
    reg.approve("provider", "p1")
    assert reg.check_now("provider", "p1", "second", WAN) is NodeStatus.REJECTED
    assert reg.check_now("provider", "p1", "first", WAN) is NodeStatus.APPROVED


def test_rejected_node_stays_rejected_even_from_an_auto_approved_network():
    reg = MemoryNodeRegistry(auto_approve_networks=["10.0.0.0/8"])
    reg.add("provider", "p1", "cred", NodeStatus.REJECTED)
    assert reg.check_now("provider", "p1", "cred", LAN) is NodeStatus.REJECTED


def test_auto_approve_networks():
    reg = MemoryNodeRegistry(auto_approve_networks=["10.0.0.0/8", "fd00::/8"])
    assert reg.check_now("provider", "a", "c", LAN) is NodeStatus.APPROVED
    assert reg.check_now("provider", "b", "c", WAN) is NodeStatus.PENDING
    assert reg.check_now("provider", "c", "c", IPv6Address("TCP", "fd00::5", 1)) is NodeStatus.APPROVED
    # An IPv4 client on a dual-stack socket shows up IPv4-mapped.
    mapped = IPv6Address("TCP", "::ffff:10.9.9.9", 1)
    assert reg.check_now("provider", "d", "c", mapped) is NodeStatus.APPROVED
    # A pending node that later connects from an approved network is approved.
    assert reg.check_now("provider", "b", "c", LAN) is NodeStatus.APPROVED


def test_same_name_in_different_roles_are_different_nodes():
    reg = MemoryNodeRegistry()
    reg.add("provider", "x", "c1")
    assert reg.check_now("site", "x", "c2", LAN) is NodeStatus.PENDING
    assert reg.status("provider", "x") is NodeStatus.APPROVED


def test_credentials_are_not_kept_in_clear():
    reg = MemoryNodeRegistry()
    secret = new_credential()
    reg.add("provider", "p", secret)
    assert secret.encode() not in repr(reg.nodes()).encode()
    assert "credential" not in str(reg.nodes()[0].describe())


def test_unknown_role_is_refused():
    with pytest.raises(ValueError):
        MemoryNodeRegistry().add("printer", "p", "c")


def test_peer_ip_of_non_ip_addresses_is_none():
    assert peer_ip(object()) is None
    assert peer_ip(IPv4Address("TCP", "not-an-ip", 1)) is None
