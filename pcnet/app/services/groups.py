"""Groups and their members (the members of a group share its quotas and its access to shared
accounts)."""

from __future__ import annotations

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.model import Group


class GroupService(Service):
    async def get(self, ref: int | str) -> Group:
        """A group by id (an int) or name (a str); NotFound."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return await self.store.get_group(ref)
        return await self.store.get_group_by_name(ref)

    async def list(self) -> list[Group]:
        return await self.store.list_groups()

    async def members(self, ref):
        group = await self.get(ref)
        return await self.store.group_members(group.id)

    async def create(self, actor: Actor, name: str, description: str = "") -> Group:
        require_admin(actor, "create groups")
        R.NAME.check(name, "name")
        R.COMMENT.check(description, "description")
        group = await self.store.create_group(name, description,
                                              audit=self.audit(actor, "group.create", "group"))
        self.ctx.publish("group", group.id, "create", group.name)
        return group

    async def add_member(self, actor: Actor, group_ref, user_ref) -> None:
        """Idempotent: a member already in the group stays (and no audit row is written)."""
        await self._membership(actor, group_ref, user_ref, add=True)

    async def remove_member(self, actor: Actor, group_ref, user_ref) -> None:
        """Idempotent."""
        await self._membership(actor, group_ref, user_ref, add=False)

    async def _membership(self, actor: Actor, group_ref, user_ref, *, add: bool) -> None:
        require_admin(actor, "change group membership")
        group = await self.get(group_ref)
        user = await self.services.users.get(user_ref)
        # The user's groups, not the group's members: a group may have thousands.
        member_of = {g.id for g in await self.store.user_groups(user.id)}
        if (group.id in member_of) == add:
            return
        action, write = (("group.add_member", self.store.add_group_member) if add else
                         ("group.remove_member", self.store.remove_group_member))
        member = {"user_id": user.id, "username": user.username}
        await write(group.id, user.id, audit=self.audit(
            actor, action, "group", subject=group,
            before=None if add else member, after=member if add else None))
        self.ctx.publish("group_member", group.id, "create" if add else "delete", group.name)
