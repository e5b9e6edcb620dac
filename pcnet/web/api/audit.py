"""/audit-log: who changed what (`pcnet.app.services.audit`). Read only: the services write it,
and no route changes or deletes it."""

from __future__ import annotations

import enum

from pcnet.app.services.actor import KINDS
from pcnet.web import _schemas as S
from pcnet.web._fields import Choice, String, Timestamp
from pcnet.web.api._base import PAGING, ApiBase

route = ApiBase.route

ActorKind = enum.Enum("ActorKind", {k.upper(): k for k in KINDS})
_TERM = dict(min_length=1, max_length=255, strip_check=False)
AUDIT_FILTERS = {
    **PAGING,
    "actor": String(**_TERM, description="who, as the log writes it: `token:3`, `user:ann`, "
                                         "`cli:root`, `provider:print01`, `scheduler`"),
    "actor_kind": Choice(ActorKind, description="what kind of actor"),
    "action": String(**_TERM, description="e.g. `printer.update`, `account.adjust`"),
    "object_kind": String(**_TERM, description="e.g. `user`, `printer`, `account`, `node`"),
    "object_id": String(**_TERM, description="the object's id (a node's name, a job's uuid)"),
    "since": Timestamp(description="changes at or after this time"),
    "until": Timestamp(description="changes before this time"),
}


class AuditRoutes(ApiBase):
    @route("GET", "/audit-log", summary="Who changed what, newest first", tag="audit log",
           query=AUDIT_FILTERS, response=S.AUDIT_PAGE, errors=(400,),
           description="Every administrative change (through this API, the `pcnet` commands, "
                       "and later the web console): who (`actor`, `actor_name`), from where "
                       "(`address`; a command's `detail` is its command line), when, what "
                       "(`action` on `object_kind`/`object_id`/`object_name`) and the values "
                       "`before` and `after` (the fields that changed; the whole record when it "
                       "was created or deleted). Secrets are never shown, only `set`, `changed` "
                       "or `removed`. Nothing can change or delete the log.")
    async def audit_log(self, call):
        q = call.query
        entries, total = await self.services.audit.list(
            call.actor, offset=q["offset"], limit=q["limit"], by=q.get("actor"),
            by_kind=q["actor_kind"].value if "actor_kind" in q else None, action=q.get("action"),
            object_kind=q.get("object_kind"), object_id=q.get("object_id"),
            since=q.get("since"), until=q.get("until"))
        return S.page_json(entries, total, q["offset"], q["limit"], S.audit_json)
