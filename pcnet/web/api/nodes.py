"""/nodes and /node-invitations: Print Providers, Site Servers and device gateways, their
enrolment and approval (`pcnet.app.services.nodes`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.domain.enrolment import DEFAULT_CODE_HOURS, MAX_CODE_HOURS, NodeRole
from pcnet.net.registry import NodeStatus
from pcnet.web import _schemas as S
from pcnet.web._fields import Boolean, Choice, Integer, Object, String
from pcnet.web.api._base import PAGING, ApiBase, page

route = ApiBase.route

NODE_NAME = String(min_length=1, max_length=255, strip_check=False, description="the node's name")
NODE_INVITE = Object({
    "name": String(rule=R.NODE_NAME, required=True,
                   description="the node's name, as it will say hello (a provider's [provider] name)"),
    "role": Choice(NodeRole, default=NodeRole.PROVIDER),
    "expires_hours": Integer(minimum=1, maximum=MAX_CODE_HOURS, default=DEFAULT_CODE_HOURS,
                             description="how long the code is valid"),
    "approve": Boolean(description="whether enrolling approves the node at once; default: yes, "
                                   "except for a Site Server, which then waits for an administrator"),
})


class NodeRoutes(ApiBase):
    @route("GET", "/nodes", summary="Print Providers, Site Servers and device gateways", tag="nodes",
           query={**PAGING, "status": Choice(NodeStatus, description="e.g. pending: waiting for approval")},
           response=S.NODE_PAGE)
    async def list_nodes(self, call):
        nodes = await self.services.nodes.list(call.query.get("status"))
        return page(nodes, call.query["offset"], call.query["limit"], S.node_json)

    @route("GET", "/nodes/<node>", summary="One node", tag="nodes", params={"node": NODE_NAME},
           response=S.NODE, errors=(400, 404))
    async def get_node(self, call):
        return S.node_json(await self.services.nodes.get(call.params["node"]))

    @route("POST", "/nodes/<node>/approve", summary="Let a pending (or rejected) node in", tag="nodes",
           params={"node": NODE_NAME}, response=S.NODE, errors=(400, 404),
           description="The node's next hello is accepted with the credential it enrolled with.")
    async def approve_node(self, call):
        return S.node_json(await self.services.nodes.approve(call.actor, call.params["node"]))

    @route("POST", "/nodes/<node>/reject", summary="Turn a node away", tag="nodes",
           params={"node": NODE_NAME}, response=S.NODE, errors=(400, 404),
           description="Its connection, if any, is closed, and its hellos are refused until it "
                       "is approved again (or re-enrolled with a new invitation).")
    async def reject_node(self, call):
        return S.node_json(await self.services.nodes.reject(call.actor, call.params["node"]))

    @route("DELETE", "/nodes/<node>", summary="Forget a node and free its name", tag="nodes",
           params={"node": NODE_NAME}, status=204, errors=(400, 404),
           description="Its connection, if any, is closed and its credential forgotten. Its "
                       "printers and job history stay. To let a node (the same or a new machine) "
                       "use the name again, invite it (`POST /node-invitations`).")
    async def delete_node(self, call):
        await self.services.nodes.delete(call.actor, call.params["node"])

    @route("GET", "/node-invitations", summary="Outstanding node invitations", tag="nodes",
           query=PAGING, response=S.NODE_INVITATION_PAGE,
           description="Invitations whose code has not been used, the expired ones included "
                       "(`expired`); never the codes.")
    async def list_node_invitations(self, call):
        now = self.now()
        return page(await self.services.nodes.invitations(), call.query["offset"],
                    call.query["limit"], lambda i: S.node_invitation_json(i, now))

    @route("POST", "/node-invitations", summary="Invite a node: a one-time enrolment code",
           tag="nodes", body=NODE_INVITE, status=201, response=S.NEW_NODE_INVITATION,
           errors=(400, 409),
           description="The code is in the reply only (pcnet keeps its hash). Put it in the node's "
                       "configuration (a Print Provider's `[server] enrolment_code`): its first "
                       "hello with the code enrols it under this name with the credential it "
                       "presents, and the code is spent. A new invitation for the same name "
                       "replaces the old one. Inviting the name of an existing node of the same "
                       "role re-enrols it (a new machine or credential): its old credential stops "
                       "working once the code is used. 409 if the name is a node of another role.")
    async def invite_node(self, call):
        b = call.body
        code, invitation = await self.services.nodes.invite(
            call.actor, b["name"], b["role"], hours=b["expires_hours"], approve=b.get("approve"))
        return {"code": code, "invitation": S.node_invitation_json(invitation, self.now())}

    @route("DELETE", "/node-invitations/<node>", summary="Withdraw a node invitation", tag="nodes",
           params={"node": NODE_NAME}, status=204, errors=(400, 404))
    async def withdraw_node_invitation(self, call):
        await self.services.nodes.withdraw(call.actor, call.params["node"])
