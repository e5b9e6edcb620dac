"""/journal-quarantine: journal entries Print Providers set aside
(`pcnet.app.services.quarantine`)."""

from __future__ import annotations

import enum

from pcnet.store import QUARANTINE_STATES
from pcnet.web import _schemas as S
from pcnet.web._fields import Choice, Id
from pcnet.web.api._base import PAGING, ApiBase
from pcnet.web.api.nodes import NODE_NAME

route = ApiBase.route

QuarantineState = enum.Enum("QuarantineState", {s.upper(): s for s in QUARANTINE_STATES})
QUARANTINE_FILTERS = {
    **PAGING,
    "node": NODE_NAME,
    "state": Choice(QuarantineState, description="quarantined: kept aside on the print server; "
                                                 "retrying: sent back into its journal; resolved: "
                                                 "replayed and acknowledged"),
}


class QuarantineRoutes(ApiBase):
    @route("GET", "/journal-quarantine", summary="Journal entries Print Providers set aside",
           tag="journal quarantine", query=QUARANTINE_FILTERS, response=S.QUARANTINE_PAGE,
           errors=(400,),
           description="Reports a print server's journal could not deliver: the server refused "
                       "them (or failed on them) for a reason other than being unavailable. The "
                       "print server keeps each entry, never drops it, and replays the rest of its "
                       "journal behind it. Newest report first.")
    async def list_quarantined(self, call):
        q = call.query
        entries, total = await self.services.quarantine.list(
            node=q.get("node"), state=q["state"].value if "state" in q else None,
            offset=q["offset"], limit=q["limit"])
        return S.page_json(entries, total, q["offset"], q["limit"], S.quarantined_json)

    @route("GET", "/journal-quarantine/<entry>", summary="One quarantined journal entry",
           tag="journal quarantine", params={"entry": Id()}, response=S.QUARANTINED_ENTRY,
           errors=(400, 404))
    async def get_quarantined(self, call):
        return S.quarantined_json(await self.services.quarantine.get(call.params["entry"]))

    @route("POST", "/journal-quarantine/<entry>/retry", summary="Send a quarantined entry again",
           tag="journal quarantine", params={"entry": Id()}, response=S.QUARANTINED_ENTRY,
           errors=(400, 404, 409, 503),
           description="The print server moves the entry back into its journal and replays it at "
                       "once (fix what it was refused for first: e.g. create the user, or register "
                       "the printer). The entry is then `retrying`; it becomes `resolved` when the "
                       "server acknowledges it, or `quarantined` again with the new error. 503 when "
                       "the print server is not connected; 409 when it was replayed already.")
    async def retry_quarantined(self, call):
        entry = await self.services.quarantine.retry(call.actor, call.params["entry"])
        return S.quarantined_json(entry)
