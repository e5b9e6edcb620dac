"""Which nodes may speak pcnet/1: node status, enrolment, and an in-memory node registry.

A node (Print Provider, Site Server, device gateway) introduces itself in its `hello` with a role,
a name and a credential it made itself, and, the first time, the one-time **enrolment code** an
administrator issued for that name (`pcnet nodes invite NAME`). The server asks an
`INodeRegistry` what to make of it: **approved** nodes get in, **pending** ones wait for an
administrator, **rejected** ones are turned away. A valid code pins the credential the node
presented to its name and is spent; from then on only that credential is accepted for that name.
An unknown name without a valid code is rejected and leaves no trace, so nobody can claim a name
by saying hello first. Nodes connecting from `auto_approve_networks` need no code. The rules are
`pcnet.domain.enrolment.judge_hello`.

`MemoryNodeRegistry` is the registry for tests and for small, config-driven deployments. The
store-backed registry (`pcnet.app.services.nodes.StoreNodeRegistry`) follows the same rules.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from twisted.internet import defer
from zope.interface import implementer

from pcnet.domain.enrolment import (
    DEFAULT_CODE_HOURS,
    ROLES,
    KnownNode,
    NodeInvitation,
    approves_by_default,
    judge_hello,
    new_enrolment_code,
)
from pcnet.domain.secrets import hash_token
from pcnet.interfaces import INodeRegistry

__all__ = ["ROLES", "MemoryNodeRegistry", "NodeRecord", "NodeStatus", "credential_digest",
           "new_credential", "peer_ip"]


class NodeStatus(enum.StrEnum):
    """A node's standing. The string values are what the store and the admin API use."""

    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"


def new_credential() -> str:
    """A fresh node credential (256 random bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def credential_digest(credential: str) -> bytes:
    """What a registry keeps instead of the credential itself.

    Credentials are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching:
    there is nothing to brute-force).
    """
    return hashlib.sha256(credential.encode("utf-8")).digest()


def peer_ip(peer) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a Twisted `IAddress` (IPv4-mapped IPv6 addresses unmapped), or None."""
    host = getattr(peer, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Networks:
    """A list of networks that some clients are let in by (`[protocol] auto_approve_networks`,
    `[metrics] allow_networks`): `ip in networks` for an address (None is in none), and
    `networks.admits(peer)` for a Twisted `IAddress` (IPv4-mapped IPv6 addresses count as
    IPv4). The strings are checked already (pcnet.config)."""

    def __init__(self, networks=()):
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __contains__(self, ip) -> bool:
        return ip is not None and any(ip.version == n.version and ip in n for n in self._networks)

    def admits(self, peer) -> bool:
        return peer_ip(peer) in self


@dataclass
class NodeRecord:
    role: str
    node: str
    status: NodeStatus
    credential_hash: str = field(repr=False)
    last_address: str | None = None

    def describe(self) -> dict:
        """For an admin listing: never the credential, not even its digest."""
        return {
            "role": self.role,
            "node": self.node,
            "status": str(self.status),
            "last_address": self.last_address,
        }


@implementer(INodeRegistry)
class MemoryNodeRegistry:
    """Node approval kept in memory, by node name (as the store keeps it).

    `auto_approve_networks` lists CIDRs (`"10.0.0.0/8"`, `"fd00::/8"`, `"127.0.0.1/32"`): a new
    node connecting from one of them is approved at once, with the credential it presented; a
    pending node connecting from one is approved too. A rejected node stays rejected. Any other
    new node needs an invitation's code (`invite`). `clock` (an `IReactorTime`) dates the
    invitations; without one, the system clock.
    """

    def __init__(self, *, auto_approve_networks: Iterable[str] = (), clock=None):
        self._networks = [ipaddress.ip_network(n, strict=False) for n in auto_approve_networks]
        self._nodes: dict[str, NodeRecord] = {}
        self._invitations: dict[str, NodeInvitation] = {}
        self._clock = clock

    # --- INodeRegistry -----------------------------------------------------------------

    def check(self, role, node, credential, peer, enrolment_code=None):
        return defer.succeed(self.check_now(role, node, credential, peer, enrolment_code))

    # --- administration -----------------------------------------------------------------

    def check_now(self, role: str, node: str, credential: str, peer,
                  enrolment_code: str | None = None) -> NodeStatus:
        """`check` without the Deferred."""
        ip = peer_ip(peer)
        record = self._nodes.get(node)
        digest = credential_digest(credential).hex()
        known = None if record is None else KnownNode(record.role, record.credential_hash,
                                                      str(record.status))
        verdict = judge_hello(
            role, digest, None if enrolment_code is None else hash_token(enrolment_code),
            node=known, invitation=self._invitations.get(node),
            auto_approve=self._auto_approved(ip), now=self._now())
        status = NodeStatus(verdict.status)
        if verdict.pin:
            record = self._nodes[node] = NodeRecord(role, node, status, digest)
        elif verdict.approve:
            record.status = status
        if verdict.spend_invitation:
            del self._invitations[node]
        if status is not NodeStatus.REJECTED:
            record.last_address = str(ip) if ip is not None else None
        return status

    def add(
        self,
        role: str,
        node: str,
        credential: str,
        status: NodeStatus = NodeStatus.APPROVED,
    ) -> None:
        """Register (or re-register) a node with its credential."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self._nodes[node] = NodeRecord(role, node, NodeStatus(status),
                                       credential_digest(credential).hex())

    def invite(self, role: str, node: str, *, hours: float = DEFAULT_CODE_HOURS,
               approve: bool | None = None) -> str:
        """Invite a node: its one-time enrolment code (replacing an earlier invitation)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        code = new_enrolment_code()
        self._invitations[node] = NodeInvitation(
            node, role, approves_by_default(role) if approve is None else approve,
            expires_at=self._now() + timedelta(hours=hours), created_at=self._now(),
            code_hash=hash_token(code))
        return code

    def set_status(self, role: str, node: str, status: NodeStatus) -> None:
        """Approve, reject or suspend a known node. A `KeyError` if it is unknown."""
        record = self._nodes[node]
        if record.role != role:
            raise KeyError((role, node))
        record.status = NodeStatus(status)

    def approve(self, role: str, node: str) -> None:
        self.set_status(role, node, NodeStatus.APPROVED)

    def reject(self, role: str, node: str) -> None:
        self.set_status(role, node, NodeStatus.REJECTED)

    def remove(self, role: str, node: str) -> None:
        """Forget a node: its name is free again (a new hello needs a new code)."""
        record = self._nodes.get(node)
        if record is not None and record.role == role:
            del self._nodes[node]

    def status(self, role: str, node: str) -> NodeStatus | None:
        record = self._nodes.get(node)
        return None if record is None or record.role != role else record.status

    def nodes(self) -> list[NodeRecord]:
        return list(self._nodes.values())

    def _now(self) -> datetime:
        return datetime.fromtimestamp(
            self._clock.seconds() if self._clock is not None else time.time(), tz=timezone.utc)

    def _auto_approved(self, ip) -> bool:
        return ip is not None and any(
            ip.version == net.version and ip in net for net in self._networks
        )
