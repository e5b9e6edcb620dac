"""Which nodes may speak pcnet/1: node status and an in-memory node registry.

A node (Print Provider, Site Server, device gateway) introduces itself in its `hello` with a role,
a name and a credential. The server asks an `INodeRegistry` what to make of it: **approved**
nodes get in, **pending** ones wait for an administrator, **rejected** ones are turned away. A
node never seen before is recorded as pending with the credential it presented (trust on first
use), so an administrator approves "provider print01 at 10.1.2.3", not a secret typed twice;
from then on only that credential is accepted for that node.

`MemoryNodeRegistry` is the registry for tests and for small, config-driven deployments (nodes
from the listed networks are approved automatically). The store-backed registry follows the same
rules.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet import defer
from zope.interface import implementer

from pcnet.interfaces import INodeRegistry

ROLES = ("provider", "site", "device")


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


@dataclass
class NodeRecord:
    role: str
    node: str
    status: NodeStatus
    credential_digest: bytes
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
    """Node approval kept in memory.

    `auto_approve_networks` lists CIDRs (`"10.0.0.0/8"`, `"fd00::/8"`, `"127.0.0.1/32"`): a new
    node connecting from one of them is approved at once, with the credential it presented; a
    pending node connecting from one is approved too. A rejected node stays rejected.
    """

    def __init__(self, *, auto_approve_networks: Iterable[str] = ()):
        self._networks = [ipaddress.ip_network(n, strict=False) for n in auto_approve_networks]
        self._nodes: dict[tuple[str, str], NodeRecord] = {}

    # --- INodeRegistry -----------------------------------------------------------------

    def check(self, role, node, credential, peer):
        return defer.succeed(self.check_now(role, node, credential, peer))

    # --- administration -----------------------------------------------------------------

    def check_now(self, role: str, node: str, credential: str, peer) -> NodeStatus:
        """`check` without the Deferred."""
        ip = peer_ip(peer)
        key = (role, node)
        record = self._nodes.get(key)
        digest = credential_digest(credential)
        if record is None:
            status = NodeStatus.APPROVED if self._auto_approved(ip) else NodeStatus.PENDING
            record = self._nodes[key] = NodeRecord(role, node, status, digest)
        elif not hmac.compare_digest(record.credential_digest, digest):
            # Someone else claims this node's name: turn them away, leave the node as it was.
            return NodeStatus.REJECTED
        elif record.status is NodeStatus.PENDING and self._auto_approved(ip):
            record.status = NodeStatus.APPROVED
        record.last_address = str(ip) if ip is not None else None
        return record.status

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
        self._nodes[(role, node)] = NodeRecord(
            role, node, NodeStatus(status), credential_digest(credential)
        )

    def set_status(self, role: str, node: str, status: NodeStatus) -> None:
        """Approve, reject or suspend a known node. A `KeyError` if it is unknown."""
        self._nodes[(role, node)].status = NodeStatus(status)

    def approve(self, role: str, node: str) -> None:
        self.set_status(role, node, NodeStatus.APPROVED)

    def reject(self, role: str, node: str) -> None:
        self.set_status(role, node, NodeStatus.REJECTED)

    def remove(self, role: str, node: str) -> None:
        """Forget a node: its next hello is a first contact again."""
        self._nodes.pop((role, node), None)

    def status(self, role: str, node: str) -> NodeStatus | None:
        record = self._nodes.get((role, node))
        return None if record is None else record.status

    def nodes(self) -> list[NodeRecord]:
        return list(self._nodes.values())

    def _auto_approved(self, ip) -> bool:
        return ip is not None and any(
            ip.version == net.version and ip in net for net in self._networks
        )
