"""/offline-policy: what Site Servers do while their link to the Application Server is down
(`pcnet.app.services.offline_policy`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.domain.model import OfflineAccountSelection, UnknownUsers
from pcnet.web import _schemas as S
from pcnet.web._fields import Boolean, Choice, Money, Object, Ref
from pcnet.web.api._base import ApiBase, ref

route = ApiBase.route

POLICY_UPDATE = Object({
    "account_selection": Choice(OfflineAccountSelection,
                                description="the account charged when choosing it needs the centre"),
    "offline_account": Ref("account", nullable=True,
                           description="the shared account for `offline-account` (id or name); "
                                       "null: none chosen, the personal account is charged"),
    "restricted_credit": Money(rule=R.NON_NEGATIVE,
                               description="how far below its last known balance a restricted "
                                           "account may go offline"),
    "unknown_users": Choice(UnknownUsers, description="deny unknown users and cards, or charge "
                                                      "`unknown_user`"),
    "unknown_user": Ref("user", nullable=True, description="the user charged for unknown users"),
    "password_auth_offline": Boolean(description="whether users may sign in with a password "
                                                 "offline"),
}, min_fields=1)


class OfflinePolicyRoutes(ApiBase):
    @route("GET", "/offline-policy", summary="The Site Servers' offline policy",
           tag="offline policy", response=S.OFFLINE_POLICY, errors=(),
           description="Set centrally, replicated to every Site Server (docs/api.md, "
                       "\"Offline policy\").")
    async def get_offline_policy(self, call):
        return S.offline_policy_json(await self.services.offline_policy.get())

    @route("PATCH", "/offline-policy", summary="Change the offline policy", tag="offline policy",
           body=POLICY_UPDATE, response=S.OFFLINE_POLICY, errors=(400, 404),
           description="Only the fields sent change. `charge-user` needs `unknown_user`.")
    async def update_offline_policy(self, call):
        changes = dict(call.body)
        for key in ("offline_account", "unknown_user"):
            if changes.get(key) is not None:
                changes[key] = ref(changes[key])
        return S.offline_policy_json(await self.services.offline_policy.update(call.actor, **changes))
