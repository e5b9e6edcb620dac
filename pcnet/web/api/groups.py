"""/groups: groups and their members (`pcnet.app.services.groups`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.web import _schemas as S
from pcnet.web._fields import Object, String
from pcnet.web.api._base import GROUP_REF, PAGING, USER_REF, ApiBase, name_field, page, ref

route = ApiBase.route

GROUP_CREATE = Object({
    "name": name_field(required=True),
    "description": String(rule=R.COMMENT, default=""),
})


class GroupRoutes(ApiBase):
    @route("GET", "/groups", summary="List groups", tag="groups", query=PAGING, response=S.GROUP_PAGE)
    async def list_groups(self, call):
        groups = await self.services.groups.list()
        return page(groups, call.query["offset"], call.query["limit"], S.group_json)

    @route("POST", "/groups", summary="Create a group", tag="groups", body=GROUP_CREATE,
           status=201, response=S.GROUP, errors=(400, 409))
    async def create_group(self, call):
        b = call.body
        return S.group_json(await self.services.groups.create(call.actor, b["name"], b["description"]))

    @route("GET", "/groups/<group>", summary="Get a group by id or name", tag="groups",
           params={"group": GROUP_REF}, response=S.GROUP, errors=(400, 404))
    async def get_group(self, call):
        return S.group_json(await self.services.groups.get(ref(call.params["group"])))

    @route("GET", "/groups/<group>/members", summary="Members of a group", tag="groups",
           params={"group": GROUP_REF}, query=PAGING, response=S.USER_PAGE, errors=(400, 404))
    async def group_members(self, call):
        members = await self.services.groups.members(ref(call.params["group"]))
        return page(members, call.query["offset"], call.query["limit"], S.user_json)

    @route("PUT", "/groups/<group>/members/<user>", summary="Add a user to a group (idempotent)",
           tag="groups", params={"group": GROUP_REF, "user": USER_REF}, status=204,
           errors=(400, 404))
    async def add_group_member(self, call):
        await self.services.groups.add_member(call.actor, ref(call.params["group"]),
                                              ref(call.params["user"]))

    @route("DELETE", "/groups/<group>/members/<user>",
           summary="Remove a user from a group (idempotent)", tag="groups",
           params={"group": GROUP_REF, "user": USER_REF}, status=204, errors=(400, 404))
    async def remove_group_member(self, call):
        await self.services.groups.remove_member(call.actor, ref(call.params["group"]),
                                                 ref(call.params["user"]))
