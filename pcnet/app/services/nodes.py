"""pcnet/1 nodes (Print Providers, Site Servers, device gateways): invitations and enrolment,
approval, and the sessions of the nodes connected now.

- `NodeSessions` follows the live sessions of every listener's `LineServerFactory`: the held-job
  and quarantine services push to nodes through it, and `connected()` says who is connected.
- `StoreNodeRegistry` is the `INodeRegistry` the line protocol asks at every hello: the rules of
  `pcnet.domain.enrolment.judge_hello`, carried out by the store in one transaction.
- `NodeService` is what administrators do: invite (a one-time enrolment code), approve,
  reject, delete, withdraw an invitation; each audited, and a rejected or deleted node's
  connection is closed.
"""

from __future__ import annotations

from datetime import timedelta

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.enrolment import (
    DEFAULT_CODE_HOURS,
    MAX_CODE_HOURS,
    NodeRole,
    approves_by_default,
    new_enrolment_code,
)
from pcnet.domain.secrets import hash_token
from pcnet.interfaces import INodeRegistry, INodeSessions
from pcnet.net.registry import Networks, NodeStatus, credential_digest, peer_ip

log = Logger(namespace="pcnet.app.services.nodes")


@implementer(INodeSessions)
class NodeSessions:
    """The live pcnet/1 sessions of every listener (see `INodeSessions`)."""

    def __init__(self, *session_maps):
        # Each listener has its own LineServerFactory and so its own sessions dict, keyed by
        # (role, node).
        self._maps: list = list(session_maps)

    def attach(self, factory) -> None:
        self._maps.append(factory.sessions)

    def session(self, role: str, node: str):
        for sessions in self._maps:
            session = sessions.get((role, node))
            if session is not None and getattr(session, "connected", True):
                return session
        return None

    def connected(self, role: str | None = None) -> list[tuple[str, str]]:
        return sorted({key for sessions in self._maps for key, session in sessions.items()
                       if (role is None or key[0] == role) and getattr(session, "connected", True)})

    def disconnect(self, node: str, why: str) -> int:
        closed = 0
        for sessions in self._maps:
            for (_, name), session in list(sessions.items()):
                if name == node:
                    session.abort(why)
                    closed += 1
        return closed


@implementer(INodeRegistry)
class StoreNodeRegistry:
    """Node enrolment and approval kept in the store, with the rules of
    `pcnet.domain.enrolment.judge_hello` (applied by the store's `node_hello` in one
    transaction): a node's first hello must carry the enrolment code an administrator issued for
    its name, unless it connects from an auto-approve network; the code pins the credential it
    presented and is spent; afterwards only that credential (and role) is accepted for that
    name. An unknown name without a valid code is rejected and recorded nowhere."""

    def __init__(self, ctx, *, auto_approve_networks=()):
        self.ctx = ctx
        self._networks = Networks(auto_approve_networks)

    def check(self, role, node, credential, peer, enrolment_code=None):
        return Deferred.fromCoroutine(self._check(role, node, credential, peer, enrolment_code))

    async def _check(self, role, node, credential, peer, enrolment_code) -> NodeStatus:
        ip = peer_ip(peer)
        verdict = await self.ctx.store.node_hello(
            role, node, credential_digest(credential).hex(), str(ip) if ip is not None else "",
            code_hash=None if enrolment_code is None else hash_token(enrolment_code),
            auto_approve=ip in self._networks)
        status = NodeStatus(verdict.status)
        if verdict.pin or verdict.approve:
            self.ctx.publish("node", node, "update", node)
        if verdict.pin or verdict.approve or status is NodeStatus.REJECTED:
            # Enrolments and refusals are what an administrator looks for; plain reconnections
            # are logged by the line protocol already.
            emit = log.warn if status is NodeStatus.REJECTED else log.info
            emit("node {role} {node!r} at {address}: {reason}", role=role, node=node,
                 address=str(ip) if ip is not None else "?", reason=verdict.reason)
        return status


class NodeService(Service):
    def __init__(self, ctx, services, sessions: INodeSessions):
        super().__init__(ctx, services)
        self.sessions = sessions

    def registry(self, *, auto_approve_networks=()) -> StoreNodeRegistry:
        """The INodeRegistry for this server's line protocol listeners."""
        return StoreNodeRegistry(self.ctx, auto_approve_networks=auto_approve_networks)

    def connected(self, role: str | None = None) -> list[tuple[str, str]]:
        """[(role, node)] connected now, sorted (e.g. for a health check)."""
        return self.sessions.connected(role)

    # --- reading ---------------------------------------------------------------------------

    async def list(self, status: NodeStatus | None = None):
        nodes = await self.store.list_nodes()
        if status is not None:
            nodes = [n for n in nodes if str(n.status) == NodeStatus(status).value]
        return nodes

    async def get(self, name: str):
        return await self.store.get_node(name)

    async def invitations(self):
        return await self.store.list_node_invitations()

    # --- what administrators do ----------------------------------------------------------------

    async def invite(self, actor: Actor, name: str, role=NodeRole.PROVIDER, *,
                     hours: float = DEFAULT_CODE_HOURS, approve: bool | None = None):
        """A one-time enrolment code for `name`: (code, NodeInvitation). The code is returned
        only here (the store keeps its hash); an earlier invitation for the name is replaced.
        `approve`: whether enrolling approves the node at once (default: yes, but a Site
        Server waits for an administrator)."""
        require_admin(actor, "invite nodes")
        R.NODE_NAME.check(name, "name")
        role = R.choice(NodeRole, role, "role")
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 1 <= hours <= MAX_CODE_HOURS:
            raise R.invalid("expires_hours", f"{hours!r} is out of range (1 to {MAX_CODE_HOURS} hours)")
        if approve is not None:
            R.boolean(approve, "approve")
        code = new_enrolment_code()
        expires_at = self.ctx.now() + timedelta(hours=hours)
        invitation = await self.store.create_node_invitation(
            name, role.value, hash_token(code), expires_at,
            approve=approves_by_default(role.value) if approve is None else approve,
            audit=self.audit(actor, "node.invite", "node"))
        log.info("{actor} invited {role} {node!r} to enrol (code valid until {until})",
                 actor=actor.label, role=role.value, node=name,
                 until=expires_at.isoformat(timespec="seconds"))
        self.ctx.publish("node", name, "update", name)
        return code, invitation

    async def withdraw(self, actor: Actor, name: str) -> None:
        """Withdraw a name's invitation (NotFound)."""
        require_admin(actor, "withdraw node invitations")
        invitation = next((i for i in await self.store.list_node_invitations() if i.name == name),
                          None)
        await self.store.delete_node_invitation(name, audit=self.audit(
            actor, "node.withdraw_invitation", "node", before=invitation, after=None))
        self.ctx.publish("node", name, "update", name)

    async def approve(self, actor: Actor, name: str):
        return await self._set_status(actor, name, NodeStatus.APPROVED)

    async def reject(self, actor: Actor, name: str):
        """Turn a node away: its connection is closed and its hellos refused until approved."""
        return await self._set_status(actor, name, NodeStatus.REJECTED)

    async def _set_status(self, actor: Actor, name: str, status: NodeStatus):
        require_admin(actor, f"{'approve' if status is NodeStatus.APPROVED else 'reject'} nodes")
        before = await self.store.get_node(name)
        record = await self.store.set_node_status(name, status.value, audit=self.audit(
            actor, f"node.{'approve' if status is NodeStatus.APPROVED else 'reject'}", "node",
            before=before))
        if status is NodeStatus.REJECTED:
            self.sessions.disconnect(name, "rejected by an administrator")
        log.info("node {node!r} {status} by {actor}", node=name, status=str(status),
                 actor=actor.label)
        self.ctx.publish("node", name, "update", name)
        return record

    async def delete(self, actor: Actor, name: str) -> None:
        """Forget a node: its name is free for a new enrolment; its connection is closed."""
        require_admin(actor, "delete nodes")
        before = await self.store.get_node(name)
        await self.store.delete_node(name, audit=self.audit(actor, "node.delete", "node",
                                                            before=before, after=None))
        self.sessions.disconnect(name, "deleted by an administrator")
        log.info("node {node!r} deleted by {actor}", node=name, actor=actor.label)
        self.ctx.publish("node", name, "delete", name)
