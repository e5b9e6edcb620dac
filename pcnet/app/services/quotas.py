"""Quotas: scheduled allocations to the personal accounts of a group's members, and the run that
applies the due ones (the quota scheduler's timer calls `run_due`).

Each allocation's ledger uuid is derived from (quota, due time, account), so a run that is
interrupted and repeated (a crash, two servers) never allocates twice for the same period.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime
from decimal import Decimal

from twisted.logger import Logger

from pcnet.app.services._base import Service
from pcnet.app.services.actor import SCHEDULER, Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.ledger import allocation_amount
from pcnet.domain.model import LedgerEntry, Quota, QuotaPeriod, TransactionKind
from pcnet.domain.quotas import next_boundary
from pcnet.errors import Forbidden, NotFound
from pcnet.money import format_money

log = Logger(namespace="pcnet.app.services.quotas")


class QuotaService(Service):
    async def list(self) -> list[Quota]:
        return sorted(await self.store.list_quotas(), key=lambda q: q.id)

    async def get(self, quota_id: int) -> Quota:
        for quota in await self.store.list_quotas():
            if quota.id == quota_id:
                return quota
        raise NotFound(f"no quota with id {quota_id}")

    async def create(self, actor: Actor, group, amount: Decimal, period, *,
                     cap: Decimal | None = None) -> Quota:
        """Schedule `amount` every `period` for the members of `group` (id or name); the first
        allocation falls due at the period's next boundary (midnight UTC; Mondays for weekly,
        the 1st for monthly)."""
        require_admin(actor, "schedule quotas")
        R.QUOTA_AMOUNT.check(amount, "amount")
        period = R.choice(QuotaPeriod, period, "period")
        if cap is not None:
            R.NON_NEGATIVE.check(cap, "cap")
        target = await self.services.groups.get(group)
        quota = await self.store.create_quota(
            target.id, amount, period, cap=cap, next_due_at=next_boundary(period, self.ctx.now()),
            audit=self.audit(actor, "quota.create", "quota", note={"group": target.name}))
        self.ctx.publish("quota", quota.id, "create")
        return quota

    async def update(self, actor: Actor, quota_id: int, **changes) -> Quota:
        """Change `amount`, `period`, `cap` (None: no cap) or `next_due_at`; a new period
        reschedules the next allocation to its next boundary unless `next_due_at` is given."""
        require_admin(actor, "change quotas")
        unknown = set(changes) - {"amount", "period", "cap", "next_due_at"}
        if unknown:
            raise TypeError(f"unknown quota fields: {', '.join(sorted(unknown))}")
        quota = await self.get(quota_id)
        fields = {}
        if "amount" in changes:
            fields["amount"] = R.QUOTA_AMOUNT.check(changes["amount"], "amount")
        if "cap" in changes:
            fields["cap"] = None if changes["cap"] is None else R.NON_NEGATIVE.check(changes["cap"], "cap")
        if "period" in changes:
            fields["period"] = R.choice(QuotaPeriod, changes["period"], "period")
        if "next_due_at" in changes:
            if not isinstance(changes["next_due_at"], datetime) or changes["next_due_at"].tzinfo is None:
                raise R.invalid("next_due_at", "expected a time with a zone")
            fields["next_due_at"] = changes["next_due_at"]
        elif "period" in fields and fields["period"] != quota.period:
            fields["next_due_at"] = next_boundary(fields["period"], self.ctx.now())
        if not fields:
            return quota
        updated = await self.store.update_quota(
            quota.id, **fields, audit=self.audit(actor, "quota.update", "quota", before=quota))
        self.ctx.publish("quota", quota.id, "update")
        return updated

    async def delete(self, actor: Actor, quota_id: int) -> None:
        """Remove the schedule (its past allocations stay in the ledger)."""
        require_admin(actor, "delete quotas")
        quota = await self.get(quota_id)
        await self.store.delete_quota(quota.id, audit=self.audit(
            actor, "quota.delete", "quota", before=quota, after=None))
        self.ctx.publish("quota", quota.id, "delete")

    # --- the scheduler ---------------------------------------------------------------------

    async def run_due(self, actor: Actor = SCHEDULER) -> int:
        """Apply every quota due now; the number of allocations made. One quota that fails
        (a deleted group, say) is logged and does not stop the others."""
        if actor.kind not in ("scheduler", "system") and not actor.admin:
            raise Forbidden(f"{actor.label} may not run the quota schedule")
        now = self.ctx.now()
        made = 0
        for quota in await self.store.due_quotas(now):
            try:
                made += await self._apply(quota, now, actor)
            except Exception:
                log.failure("quota {id} could not be applied", id=quota.id)
        return made

    async def _apply(self, quota: Quota, now: datetime, actor: Actor) -> int:
        due_at = quota.next_due_at or now
        made = 0
        for user in await self.store.group_members(quota.group_id):
            if user.personal_account_id is None or user.disabled:
                continue
            account = await self.store.get_account(user.personal_account_id)
            amount = allocation_amount(account.balance, quota.amount, quota.cap)
            if amount <= 0:
                continue
            key = f"pcnet:quota:{quota.id}:{due_at.isoformat()}:{account.id}"
            await self.store.apply_ledger_entry(LedgerEntry(
                uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, key)), account_id=account.id,
                amount=amount, kind=TransactionKind.ALLOCATION, reference=f"quota:{quota.id}",
                comment=f"{quota.period.value} allocation {format_money(amount)}",
                origin="app", created_at=now))
            self.ctx.publish("account", account.id, "update", account.name)
            made += 1
        await self.store.mark_quota_applied(quota.id, now, next_boundary(quota.period, now))
        self.ctx.publish("quota", quota.id, "update")
        log.info("quota {id}: {n} allocations ({actor})", id=quota.id, n=made, actor=actor.label)
        return made
