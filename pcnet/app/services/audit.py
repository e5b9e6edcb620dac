"""Reading the audit log (the services write it, each row in the transaction of its write;
nothing changes or deletes it)."""

from __future__ import annotations

from datetime import datetime

from pcnet.app.services._base import Service
from pcnet.app.services.actor import KINDS, Actor, require_admin
from pcnet.domain import rules as R


class AuditService(Service):
    async def list(self, actor: Actor, *, offset: int = 0, limit: int = 100,
                   by: str | None = None, by_kind: str | None = None, action: str | None = None,
                   object_kind: str | None = None, object_id: str | None = None,
                   since: datetime | None = None, until: datetime | None = None):
        """(list[AuditEntry], total), newest first: `by` an actor as written ("token:3",
        "cli:root"), `by_kind` a kind of actor ("token", "cli", ...), `action`
        ("printer.update"), `object_kind` and `object_id`; `since` inclusive, `until`
        exclusive. Administrators only."""
        require_admin(actor, "read the audit log")
        if by_kind is not None and by_kind not in KINDS:
            raise R.invalid("actor_kind", f"{by_kind!r} is not one of {', '.join(KINDS)}")
        return await self.store.list_audit(offset, limit, actor=by, actor_kind=by_kind,
                                           action=action, object_kind=object_kind,
                                           object_id=object_id, since=since, until=until)
