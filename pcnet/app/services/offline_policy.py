"""The Site Server's offline policy: what a Site Server does while its link to the Application
Server is down. One record, set centrally here, replicated to Site Servers in the change feed
(`offline_policy`), shown and changed through `/api/v1/offline-policy`.

- `account_selection`: the account charged when choosing it needs the centre: the shared
  `offline_account` (the default; while none is chosen, the personal account), the user's
  `personal` account, or `cancel` the job;
- `restricted_credit`: how far below its last known balance a restricted account may go
  offline (0 by default: not at all);
- `unknown_users`: `deny` unknown users and cards (the default), or `charge-user`: charge
  `unknown_user` (a user id or name), to be matched later;
- `password_auth_offline`: whether users may sign in with a password offline (the Site
  Server checks the replicated hash).
"""

from __future__ import annotations

from dataclasses import replace

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.model import OfflineAccountSelection, SiteOfflinePolicy, UnknownUsers

POLICY_CHANGES = ("account_selection", "offline_account", "restricted_credit", "unknown_users",
                  "unknown_user", "password_auth_offline")


class OfflinePolicyService(Service):
    async def get(self) -> SiteOfflinePolicy:
        return await self.store.get_offline_policy()

    async def update(self, actor: Actor, **changes) -> SiteOfflinePolicy:
        """Change what `changes` names (`POLICY_CHANGES`); `offline_account` and
        `unknown_user` are ids or names (None: none). Charging unknown users needs a user."""
        require_admin(actor, "change the offline policy")
        unknown = set(changes) - set(POLICY_CHANGES)
        if unknown:
            raise TypeError(f"unknown offline policy fields: {', '.join(sorted(unknown))}")
        current = await self.get()
        fields = {}
        if "account_selection" in changes:
            fields["account_selection"] = R.choice(OfflineAccountSelection,
                                                   changes["account_selection"], "account_selection")
        if "offline_account" in changes:
            ref = changes["offline_account"]
            fields["offline_account_id"] = (
                None if ref is None else (await self.services.accounts.shared(ref, "offline_account")).id)
        if "restricted_credit" in changes:
            fields["restricted_credit"] = R.NON_NEGATIVE.check(changes["restricted_credit"],
                                                               "restricted_credit")
        if "unknown_users" in changes:
            fields["unknown_users"] = R.choice(UnknownUsers, changes["unknown_users"], "unknown_users")
        if "unknown_user" in changes:
            ref = changes["unknown_user"]
            fields["unknown_user_id"] = None if ref is None else (await self.services.users.get(ref)).id
        if "password_auth_offline" in changes:
            fields["password_auth_offline"] = R.boolean(changes["password_auth_offline"],
                                                        "password_auth_offline")
        policy = replace(current, **fields)
        if policy.unknown_users is UnknownUsers.CHARGE_USER and policy.unknown_user_id is None:
            raise R.invalid("unknown_user", "charging unknown users needs the user to charge")
        if policy == current:
            return current
        stored = await self.store.set_offline_policy(policy, audit=self.audit(
            actor, "offline_policy.update", "offline_policy", before=current,
            after=lambda p: replace(p, updated_at=current.updated_at)))
        self.ctx.publish("offline_policy", 1, "update")
        return stored
