"""Accounts: shared accounts and who may charge them, and the administrator's balance changes
(adjust, set-balance). Job charges are the job service's; quota allocations the quota
service's. Every balance change is one ledger row with a uuid, so a repeat changes nothing."""

from __future__ import annotations

from decimal import Decimal

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.model import Account, AccountKind, LedgerEntry, Transaction, TransactionKind
from pcnet.errors import Conflict

#: What `update` may change (name, parent and pin of shared accounts only).
ACCOUNT_CHANGES = ("name", "parent", "pin", "restricted", "overdraft", "comment", "disabled")


class AccountService(Service):
    # --- reading ---------------------------------------------------------------------------

    async def get(self, ref: int | str) -> Account:
        """An account by id (an int), or a shared account by name (a str); NotFound."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return await self.store.get_account(ref)
        return await self.store.get_account_by_name(ref)

    async def shared(self, ref, field: str = "account") -> Account:
        """A shared account; a personal one is refused, naming `field`."""
        account = await self.get(ref)
        if AccountKind(account.kind) is not AccountKind.SHARED:
            raise R.invalid(field, f"account {account.id} is a personal account; this needs a shared one")
        return account

    async def list(self, kind: AccountKind | None = None, offset: int = 0, limit: int = 100):
        return await self.store.list_accounts(kind=kind, offset=offset, limit=limit)

    async def access(self, ref) -> dict:
        account = await self.shared(ref)
        return await self.store.account_access(account.id)

    async def transactions(self, ref, offset: int = 0, limit: int = 100):
        account = await self.get(ref)
        return await self.store.list_transactions(account.id, offset=offset, limit=limit)

    # --- shared accounts -------------------------------------------------------------------

    async def create_shared(self, actor: Actor, name: str, *, parent=None, pin: str | None = None,
                            restricted: bool = False, overdraft: Decimal = Decimal(0),
                            comment: str = "", initial_balance: Decimal | None = None) -> Account:
        require_admin(actor, "create shared accounts")
        R.NAME.check(name, "name")
        R.boolean(restricted, "restricted")
        R.NON_NEGATIVE.check(overdraft, "overdraft")
        R.COMMENT.check(comment, "comment")
        if initial_balance is not None:
            R.ANY_AMOUNT.check(initial_balance, "initial_balance")
        fields = {}
        if parent is not None:
            fields["parent_id"] = (await self.shared(parent, "parent")).id
        if pin is not None:
            R.PIN.check(pin, "pin")
            fields["pin_hash"] = await self.ctx.hash_secret(pin)
        account = await self.store.create_shared_account(
            name, restricted=restricted, overdraft=overdraft, comment=comment,
            initial_balance=initial_balance, **fields,
            audit=self.audit(actor, "account.create", "account"))
        self.ctx.publish("account", account.id, "create", account.name)
        return account

    async def update(self, actor: Actor, ref, **changes) -> Account:
        """Change what `changes` names (`ACCOUNT_CHANGES`); `parent` or `pin` None removes it.
        Name, parent and PIN belong to shared accounts: a personal one follows its user."""
        require_admin(actor, "change accounts")
        unknown = set(changes) - set(ACCOUNT_CHANGES)
        if unknown:
            raise TypeError(f"unknown account fields: {', '.join(sorted(unknown))}")
        account = await self.get(ref)
        if AccountKind(account.kind) is AccountKind.PERSONAL:
            for key in ("name", "parent", "pin"):
                if key in changes:
                    raise R.invalid(key, "only shared accounts have this; a personal account follows its user")
        fields = {}
        if "name" in changes:
            fields["name"] = R.NAME.check(changes["name"], "name")
        for key in ("restricted", "disabled"):
            if key in changes:
                fields[key] = R.boolean(changes[key], key)
        if "overdraft" in changes:
            fields["overdraft"] = R.NON_NEGATIVE.check(changes["overdraft"], "overdraft")
        if "comment" in changes:
            fields["comment"] = R.COMMENT.check(changes["comment"], "comment")
        if "parent" in changes:
            fields["parent_id"] = (None if changes["parent"] is None
                                   else await self._check_parent(account, changes["parent"]))
        if "pin" in changes:
            pin = changes["pin"]
            if pin is not None:
                R.PIN.check(pin, "pin")
            fields["pin_hash"] = None if pin is None else await self.ctx.hash_secret(pin)
        if not fields:
            return account
        updated = await self.store.update_account(
            account.id, **fields, audit=self.audit(actor, "account.update", "account",
                                                   before=account))
        self.ctx.publish("account", account.id, "update", account.name)
        return updated

    async def _check_parent(self, account: Account, parent_ref) -> int:
        parent = await self.shared(parent_ref, "parent")
        seen = {account.id}
        ancestor = parent
        while ancestor is not None:
            if ancestor.id in seen:
                raise R.invalid("parent", f"account {parent.id} is {account.name}'s own descendant (a loop)")
            seen.add(ancestor.id)
            ancestor = await self.store.get_account(ancestor.parent_id) if ancestor.parent_id else None
        return parent.id

    # --- who may charge a shared account ----------------------------------------------------

    async def grant(self, actor: Actor, ref, *, user=None, group=None) -> None:
        """Let a user (or a group's members) charge a shared account. Idempotent."""
        await self._access(actor, ref, user, group, grant=True)

    async def revoke(self, actor: Actor, ref, *, user=None, group=None) -> None:
        """Idempotent."""
        await self._access(actor, ref, user, group, grant=False)

    async def _access(self, actor: Actor, ref, user_ref, group_ref, *, grant: bool) -> None:
        require_admin(actor, "change who may charge a shared account")
        if (user_ref is None) == (group_ref is None):
            raise TypeError("give exactly one of user and group")
        account = await self.shared(ref)
        access = await self.store.account_access(account.id)
        if user_ref is not None:
            target = await self.services.users.get(user_ref)
            key, ids, shown = "user_id", access["users"], {"user_id": target.id, "username": target.username}
        else:
            target = await self.services.groups.get(group_ref)
            key, ids, shown = "group_id", access["groups"], {"group_id": target.id, "group": target.name}
        if (target.id in ids) == grant:
            return
        write = self.store.grant_account_access if grant else self.store.revoke_account_access
        await write(account.id, **{key: target.id}, audit=self.audit(
            actor, "account.grant" if grant else "account.revoke", "account", subject=account,
            before=None if grant else shown, after=shown if grant else None))
        self.ctx.publish("account_access", account.id, "create" if grant else "delete", account.name)

    # --- balance changes -------------------------------------------------------------------

    async def adjust(self, actor: Actor, ref, amount: Decimal, *, uuid: str,
                     comment: str = "") -> tuple[Transaction, Account]:
        """Add `amount` (negative: take it off) as an ADJUST ledger row with this `uuid`: a
        repeat returns the original row and changes nothing; the uuid of a different
        transaction is a Conflict (`idempotency_conflict`). Fires with (row, account after)."""
        require_admin(actor, "adjust balances")
        R.ADJUSTMENT.check(amount, "amount")
        R.COMMENT.check(comment, "comment")
        account = await self.get(ref)

        def same(t: Transaction) -> bool:
            return (t.account_id == account.id and TransactionKind(t.kind) is TransactionKind.ADJUST
                    and t.amount == amount)

        repeat = await self._repeat(uuid, same)
        if repeat is not None:
            return repeat, account
        entry = LedgerEntry(uuid=uuid, account_id=account.id, amount=amount,
                            kind=TransactionKind.ADJUST, reference=actor.label, comment=comment,
                            origin="app")
        txn = await self.store.apply_ledger_entry(entry, guard=False, audit=self._balance_audit(
            actor, "account.adjust", account, comment))
        return await self._changed(txn, same, account)

    async def set_balance(self, actor: Actor, ref, balance: Decimal, *, uuid: str,
                          comment: str = "") -> tuple[Transaction, Account]:
        """Set the balance to `balance` with a SET ledger row holding the difference;
        idempotent on `uuid` like `adjust`."""
        require_admin(actor, "set balances")
        R.ANY_AMOUNT.check(balance, "balance")
        R.COMMENT.check(comment, "comment")
        account = await self.get(ref)

        def same(t: Transaction) -> bool:
            return (t.account_id == account.id and TransactionKind(t.kind) is TransactionKind.SET
                    and t.balance_after == balance)

        repeat = await self._repeat(uuid, same)
        if repeat is not None:
            return repeat, account
        txn = await self.store.set_balance(account.id, balance, uuid=uuid, comment=comment,
                                           origin="app", audit=self._balance_audit(
                                               actor, "account.set_balance", account, comment))
        return await self._changed(txn, same, account)

    async def _repeat(self, uuid: str, same) -> Transaction | None:
        """The transaction a repeated request made the first time (applied once: no new row,
        no audit row); Conflict if the uuid belongs to a different one."""
        stored = await self.store.find_transaction(uuid)
        if stored is not None and not same(stored):
            raise Conflict(f"uuid: {uuid} was already used for a different transaction",
                           code="idempotency_conflict")
        return stored

    def _balance_audit(self, actor: Actor, action: str, account: Account, comment: str):
        return self.audit(actor, action, "account", subject=account,
                          before={"balance": account.balance},
                          after=lambda t: {"balance": t.balance_after, "amount": t.amount,
                                           "comment": comment, "transaction": t.uuid})

    async def _changed(self, txn: Transaction, same, account: Account):
        if not same(txn):   # the uuid was taken meanwhile by another request
            raise Conflict(f"uuid: {txn.uuid} was already used for a different transaction",
                           code="idempotency_conflict")
        self.ctx.publish("account", account.id, "update", account.name)
        return txn, await self.store.get_account(account.id)
