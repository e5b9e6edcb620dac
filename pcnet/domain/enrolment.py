"""Enrolment of pcnet/1 nodes: which hello lets a node in, and what it changes.

A node (Print Provider, Site Server, device gateway) makes its own credential and presents it
in every hello. A name is never given to whoever says hello first: an administrator first
**invites** the node by name and role (`pcnet nodes invite NAME`), which makes a one-time
enrolment code (shown once, kept only as a hash, with an expiry). The node's first hello carries
that code; a valid code pins the credential the node presented to the name and is spent. From
then on the name answers only to that credential (and role). Nodes connecting from the
server's `auto_approve_networks` need no code.

`judge_hello` is the one statement of these rules. The store applies it inside the transaction
that reads the node and its invitation (`pcnet.store`), the in-memory registry in memory
(`pcnet.net.registry.MemoryNodeRegistry`); both only carry out its `Verdict`.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime

APPROVED, PENDING, REJECTED = "approved", "pending", "rejected"


class NodeRole(enum.StrEnum):
    """What a node is: a Print Provider, a Site Server or a device gateway."""

    PROVIDER = "provider"
    SITE = "site"
    DEVICE = "device"


ROLES = tuple(r.value for r in NodeRole)

#: How long an enrolment code is valid when the administrator does not say, and at most (hours).
DEFAULT_CODE_HOURS = 24
MAX_CODE_HOURS = 30 * 24

#: What an administrator may invite a node as: a name usable in a URL path and a log line.
NODE_NAME_PATTERN = r"[^/\s]{1,255}"
NODE_NAME_HINT = "must be 1 to 255 characters without spaces or slashes"

#: Enrolment codes are made by pcnet (`new_enrolment_code`); a hello's code field is at most this long.
MAX_CODE_LENGTH = 128


def new_enrolment_code() -> str:
    """A fresh one-time enrolment code: 192 random bits as 32 URL-safe characters.

    Unguessable, so (like node credentials and API tokens) a plain SHA-256 of it is what the
    server keeps (`pcnet.domain.secrets.hash_token`).
    """
    return secrets.token_urlsafe(24)


def approves_by_default(role: str) -> bool:
    """Whether a valid code approves the node at once when the administrator does not say.

    Site Servers take over charging when their site is cut off, so (as in PaperCut) one still
    waits for an administrator's approval after enrolling; a Print Provider or a device gateway
    the administrator invited is in at once.
    """
    return role != "site"


@dataclass(frozen=True)
class KnownNode:
    """What the rules need of a node already recorded under the hello's name."""

    role: str
    credential_hash: str
    status: str


@dataclass(frozen=True)
class NodeInvitation:
    """An outstanding invitation to enrol a node: the name, the role, whether enrolling
    approves the node, and until when the code is valid. `code_hash` is the SHA-256 of the code
    (never the code, which is shown once); it is left out of listings."""

    name: str
    role: str
    approve: bool
    expires_at: datetime
    created_at: datetime | None = None
    code_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Verdict:
    """What a hello gets, and what the registry must change to carry it out.

    - `status`: the answer ("approved", "pending" or "rejected");
    - `pin`: record the node under its name with this role, credential and `status`
      (a new node, or a known name re-enrolled with a code: its old credential stops working);
    - `approve`: the known node is now approved (it came from an auto-approve network);
    - `spend_invitation`: the invitation's code has been used;
    - `reason`: why, for the server's log (never a secret).
    """

    status: str
    reason: str
    pin: bool = False
    approve: bool = False
    spend_invitation: bool = False


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def judge_hello(role: str, credential_hash: str, code_hash: str | None, *,
                node: KnownNode | None, invitation: NodeInvitation | None, auto_approve: bool,
                now: datetime) -> Verdict:
    """The verdict on a hello from `role` presenting a credential (and maybe an enrolment
    code), given the node already recorded under its name (or None), that name's outstanding
    invitation (or None) and whether the hello comes from an auto-approve network.

    1. The known node's own credential and role: its stored status (a pending node from an
       auto-approve network is approved). A spent or invalid code sent along is ignored (a node
       may keep a spent code in its configuration); a valid one is spent. If the node was
       rejected, a valid code re-enrols it (2.): a new invitation is how an administrator lets
       it in again.
    2. Otherwise a code that matches the name's invitation, its role, and has not expired:
       the node is (re-)enrolled with this credential, approved or pending as the invitation
       says (approved from an auto-approve network), and the code is spent.
    3. Otherwise a new name from an auto-approve network: enrolled and approved.
    4. Anything else is rejected and changes nothing: an unknown name without a valid code
       (no row is created), a wrong, expired or used code, a wrong credential or role.
    """
    own = node is not None and node.role == role and _same(node.credential_hash, credential_hash)
    if own and not (node.status == REJECTED and code_hash is not None):
        # A valid code the node itself presents is spent too, so that it cannot serve anyone
        # else later (an administrator re-invited the name, and the node kept its credential).
        spend = (code_hash is not None and invitation is not None and invitation.role == role
                 and _same(invitation.code_hash, code_hash) and invitation.expires_at > now)
        if node.status == PENDING and auto_approve:
            return Verdict(APPROVED, "approved: connects from an auto-approve network", approve=True,
                           spend_invitation=spend)
        return Verdict(node.status, f"known node, {node.status}", spend_invitation=spend)
    if code_hash is not None:
        if invitation is None or not _same(invitation.code_hash, code_hash):
            return Verdict(REJECTED, "refused: the enrolment code is not valid for this name")
        if invitation.role != role:
            return Verdict(REJECTED, f"refused: the enrolment code is for a {invitation.role}, not a {role}")
        if invitation.expires_at <= now:
            return Verdict(REJECTED, "refused: the enrolment code has expired")
        if node is not None and node.role != role:
            return Verdict(REJECTED, f"refused: the name belongs to a {node.role}")
        status = APPROVED if invitation.approve or auto_approve else PENDING
        again = "re-enrolled (new credential)" if node is not None else "enrolled"
        return Verdict(status, f"{again} with an enrolment code, {status}", pin=True,
                       spend_invitation=True)
    if node is None and auto_approve:
        return Verdict(APPROVED, "enrolled: connects from an auto-approve network", pin=True)
    if node is None:
        return Verdict(REJECTED, "refused: unknown node without an enrolment code")
    return Verdict(REJECTED, "refused: wrong credential or role for this name")
