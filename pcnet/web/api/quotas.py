"""/quotas: scheduled group allocations (`pcnet.app.services.quotas`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.domain.model import QuotaPeriod
from pcnet.web import _schemas as S
from pcnet.web._fields import Choice, Id, Money, Object, Ref, Timestamp
from pcnet.web.api._base import PAGING, ApiBase, page, ref

route = ApiBase.route

QUOTA_CREATE = Object({
    "group": Ref("group", required=True),
    "amount": Money(rule=R.QUOTA_AMOUNT, required=True),
    "period": Choice(QuotaPeriod, required=True),
    "cap": Money(rule=R.NON_NEGATIVE, nullable=True,
                 description="an allocation never lifts a balance above the cap"),
})
QUOTA_UPDATE = Object({
    "amount": Money(rule=R.QUOTA_AMOUNT),
    "period": Choice(QuotaPeriod, description="changing it reschedules the next allocation"),
    "cap": Money(rule=R.NON_NEGATIVE, nullable=True),
    "next_due_at": Timestamp(),
}, min_fields=1)


class QuotaRoutes(ApiBase):
    @route("GET", "/quotas", summary="List quota schedules", tag="quotas", query=PAGING,
           response=S.QUOTA_PAGE)
    async def list_quotas(self, call):
        quotas = await self.services.quotas.list()
        return page(quotas, call.query["offset"], call.query["limit"], S.quota_json)

    @route("POST", "/quotas", summary="Schedule a group quota", tag="quotas", body=QUOTA_CREATE,
           status=201, response=S.QUOTA, errors=(400, 404),
           description="The first allocation falls due at the next period boundary (midnight UTC; "
                       "Mondays for weekly, the 1st for monthly).")
    async def create_quota(self, call):
        b = call.body
        quota = await self.services.quotas.create(call.actor, ref(b["group"]), b["amount"],
                                                  b["period"], cap=b.get("cap"))
        return S.quota_json(quota)

    @route("GET", "/quotas/<quota>", summary="Get a quota schedule", tag="quotas",
           params={"quota": Id()}, response=S.QUOTA, errors=(400, 404))
    async def get_quota(self, call):
        return S.quota_json(await self.services.quotas.get(call.params["quota"]))

    @route("PATCH", "/quotas/<quota>", summary="Change a quota schedule", tag="quotas",
           params={"quota": Id()}, body=QUOTA_UPDATE, response=S.QUOTA, errors=(400, 404),
           description="A new period reschedules the next allocation to that period's next "
                       "boundary unless `next_due_at` is given too.")
    async def update_quota(self, call):
        return S.quota_json(await self.services.quotas.update(call.actor, call.params["quota"],
                                                              **call.body))

    @route("DELETE", "/quotas/<quota>", summary="Delete a quota schedule", tag="quotas",
           params={"quota": Id()}, status=204, errors=(400, 404),
           description="Past allocations stay in the ledger.")
    async def delete_quota(self, call):
        await self.services.quotas.delete(call.actor, call.params["quota"])
