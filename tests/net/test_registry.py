"""Node enrolment and approval: NodeStatus and the in-memory INodeRegistry (the rules of
pcnet.domain.enrolment, which the store-backed registry shares)."""

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
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


def test_an_unknown_name_without_a_code_is_rejected_and_leaves_no_record():
    reg = MemoryNodeRegistry()
    for i in range(50):
        assert reg.check_now("provider", f"squat{i}", "cred", WAN) is NodeStatus.REJECTED
    assert reg.check_now("provider", "print01", "cred", WAN, "not-a-code") is NodeStatus.REJECTED
    assert reg.nodes() == []


def test_an_invited_node_enrols_with_its_code_once_and_its_credential_is_pinned():
    clock = Clock()
    reg = MemoryNodeRegistry(clock=clock)
    code = reg.invite("provider", "p1")
    assert reg.check_now("provider", "p1", "first", WAN, code) is NodeStatus.APPROVED
    assert reg.nodes()[0].describe() == {
        "role": "provider", "node": "p1", "status": "approved", "last_address": "203.0.113.9"
    }
    # The code is spent: another machine cannot use it to take the name over.
    assert reg.check_now("provider", "p1", "second", WAN, code) is NodeStatus.REJECTED
    assert reg.check_now("provider", "p1", "second", WAN) is NodeStatus.REJECTED
    # The node itself may keep sending its spent code.
    assert reg.check_now("provider", "p1", "first", WAN, code) is NodeStatus.APPROVED
    assert reg.check_now("provider", "p1", "first", WAN) is NodeStatus.APPROVED


def test_a_site_enrolled_with_a_code_waits_for_an_administrator_unless_told_otherwise():
    reg = MemoryNodeRegistry()
    code = reg.invite("site", "s1")
    assert reg.check_now("site", "s1", "cred", WAN, code) is NodeStatus.PENDING
    assert reg.check_now("site", "s1", "cred", WAN) is NodeStatus.PENDING
    reg.approve("site", "s1")
    assert reg.check_now("site", "s1", "cred", WAN) is NodeStatus.APPROVED
    code = reg.invite("site", "s2", approve=True)
    assert reg.check_now("site", "s2", "cred", WAN, code) is NodeStatus.APPROVED


def test_a_code_is_only_good_for_its_name_and_role_and_until_it_expires():
    clock = Clock()
    reg = MemoryNodeRegistry(clock=clock)
    code = reg.invite("provider", "p1", hours=2)
    assert reg.check_now("provider", "p2", "c", WAN, code) is NodeStatus.REJECTED
    assert reg.check_now("site", "p1", "c", WAN, code) is NodeStatus.REJECTED
    clock.advance(2 * 3600)
    assert reg.check_now("provider", "p1", "c", WAN, code) is NodeStatus.REJECTED
    assert reg.nodes() == []
    # A new invitation replaces the old one: only the new code works.
    old, new = reg.invite("provider", "p1"), reg.invite("provider", "p1")
    assert reg.check_now("provider", "p1", "c", WAN, old) is NodeStatus.REJECTED
    assert reg.check_now("provider", "p1", "c", WAN, new) is NodeStatus.APPROVED


def test_a_new_invitation_re_enrols_a_known_name_with_a_new_credential():
    reg = MemoryNodeRegistry()
    reg.add("provider", "p1", "old")
    code = reg.invite("provider", "p1")
    assert reg.check_now("provider", "p1", "old", WAN) is NodeStatus.APPROVED
    assert reg.check_now("provider", "p1", "new", WAN, code) is NodeStatus.APPROVED
    assert reg.check_now("provider", "p1", "old", WAN) is NodeStatus.REJECTED


def test_a_code_the_known_node_presents_itself_is_spent_and_serves_nobody_later():
    reg = MemoryNodeRegistry()
    reg.add("provider", "p1", "cred")
    code = reg.invite("provider", "p1")
    assert reg.check_now("provider", "p1", "cred", WAN, code) is NodeStatus.APPROVED
    assert reg.check_now("provider", "p1", "thief", WAN, code) is NodeStatus.REJECTED
    assert reg.check_now("provider", "p1", "cred", WAN) is NodeStatus.APPROVED


def test_rejected_node_stays_rejected_even_from_an_auto_approved_network():
    reg = MemoryNodeRegistry(auto_approve_networks=["10.0.0.0/8"])
    reg.add("provider", "p1", "cred", NodeStatus.REJECTED)
    assert reg.check_now("provider", "p1", "cred", LAN) is NodeStatus.REJECTED


def test_auto_approve_networks_need_no_code():
    reg = MemoryNodeRegistry(auto_approve_networks=["10.0.0.0/8", "fd00::/8"])
    assert reg.check_now("provider", "a", "c", LAN) is NodeStatus.APPROVED
    assert reg.check_now("provider", "b", "c", WAN) is NodeStatus.REJECTED
    assert reg.check_now("provider", "c", "c", IPv6Address("TCP", "fd00::5", 1)) is NodeStatus.APPROVED
    # An IPv4 client on a dual-stack socket shows up IPv4-mapped.
    mapped = IPv6Address("TCP", "::ffff:10.9.9.9", 1)
    assert reg.check_now("provider", "d", "c", mapped) is NodeStatus.APPROVED
    # A pending node that later connects from an approved network is approved.
    reg.add("provider", "e", "c", NodeStatus.PENDING)
    assert reg.check_now("provider", "e", "c", LAN) is NodeStatus.APPROVED
    # ... but the network is no licence to take a known name with another credential.
    assert reg.check_now("provider", "a", "other", LAN) is NodeStatus.REJECTED


def test_a_name_belongs_to_one_role():
    reg = MemoryNodeRegistry()
    reg.add("provider", "x", "c1")
    assert reg.check_now("site", "x", "c1", LAN) is NodeStatus.REJECTED
    assert reg.status("provider", "x") is NodeStatus.APPROVED
    assert reg.status("site", "x") is None


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


def test_a_network_list_admits_its_networks_ipv4_mapped_peers_included_and_nothing_else():
    """One allow-list check for auto-approved nodes and the metrics endpoint: an IPv4 client
    reaching a dual-stack listener (::ffff:10.1.2.3) counts as IPv4, a peer without an IP
    address (a Unix socket) and another address family are in no network."""
    from twisted.internet.address import UNIXAddress

    from pcnet.net.registry import Networks

    networks = Networks(["10.0.0.0/8", "2001:db8::/32"])
    assert networks.admits(IPv4Address("TCP", "10.1.2.3", 1))
    assert networks.admits(IPv6Address("TCP", "::ffff:10.1.2.3", 1))
    assert networks.admits(IPv6Address("TCP", "2001:db8::5", 1))
    assert not networks.admits(IPv4Address("TCP", "192.0.2.1", 1))
    assert not networks.admits(IPv6Address("TCP", "::1", 1))
    assert not networks.admits(UNIXAddress(b"/run/pcnet.sock"))
    assert not Networks().admits(IPv4Address("TCP", "10.1.2.3", 1))
