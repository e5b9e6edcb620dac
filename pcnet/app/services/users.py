"""Users: their records, cards, password and PIN, group membership through `upsert`.

A user's record and personal account are created together. New users are **restricted** by
default (their personal account may not go below `-overdraft`, 0 unless given): a new user
prints only with credit, as PaperCut's default. Passwords and PINs are kept only as slow salted
hashes; card numbers are credentials too, never repeated in an error about whose they are.
"""

from __future__ import annotations

from decimal import Decimal

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.model import User
from pcnet.errors import Conflict, NotFound

#: What `update` may change.
USER_CHANGES = ("full_name", "email", "department", "office", "card_numbers", "password", "pin",
                "admin", "disabled")


def check_profile(fields: dict) -> dict:
    """The profile fields of a user (create or update), each checked by its rule."""
    out = {}
    for name, rule in (("full_name", R.LINE), ("email", R.EMAIL), ("department", R.LINE),
                       ("office", R.LINE)):
        if name in fields:
            out[name] = rule.check(fields[name], name)
    if "card_numbers" in fields:
        out["card_numbers"] = R.items(R.CARD, fields["card_numbers"], "card_numbers",
                                      max_items=R.MAX_CARDS, unique=True)
    for name in ("admin", "disabled"):
        if name in fields:
            out[name] = R.boolean(fields[name], name)
    if fields.get("password") is not None:
        R.PASSWORD.check(fields["password"], "password")
    if fields.get("pin") is not None:
        R.PIN.check(fields["pin"], "pin")
    return out


class UserService(Service):
    # --- reading ---------------------------------------------------------------------------

    async def get(self, ref: int | str) -> User:
        """A user by id (an int) or username (a str); NotFound."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return await self.store.get_user(ref)
        return await self.store.get_user_by_name(ref)

    async def list(self, offset: int = 0, limit: int = 100, search: str | None = None):
        return await self.store.list_users(offset=offset, limit=limit, search=search)

    async def groups(self, ref):
        user = await self.get(ref)
        return await self.store.user_groups(user.id)

    async def personal_account(self, ref):
        user = await self.get(ref)
        if user.personal_account_id is None:
            raise NotFound(f"user {user.username} has no personal account")
        return await self.store.get_account(user.personal_account_id)

    async def find_by_card(self, card_number: str) -> User | None:
        return await self.store.find_user_by_card(card_number)

    # --- writing ---------------------------------------------------------------------------

    async def create(self, actor: Actor, username: str, *, password: str | None = None,
                     pin: str | None = None, initial_balance: Decimal | None = None,
                     restricted: bool = True, overdraft: Decimal | None = None,
                     **profile) -> User:
        """Create a user and their personal account (restricted unless `restricted=False`;
        `initial_balance` as an INITIAL ledger row). Conflict if the username or a card is
        taken."""
        require_admin(actor, "create users")
        R.USERNAME.check(username, "username")
        unknown = set(profile) - {"full_name", "email", "department", "office", "card_numbers",
                                  "admin"}
        if unknown:
            raise TypeError(f"unknown user fields: {', '.join(sorted(unknown))}")
        fields = check_profile({**profile, "password": password, "pin": pin})
        R.boolean(restricted, "restricted")
        if initial_balance is not None:
            R.ANY_AMOUNT.check(initial_balance, "initial_balance")
        if overdraft is not None:
            R.NON_NEGATIVE.check(overdraft, "overdraft")
        if password is not None:
            fields["password_hash"] = await self.ctx.hash_secret(password)
        if pin is not None:
            fields["pin_hash"] = await self.ctx.hash_secret(pin)
        user = await self.store.create_user(
            username, initial_balance=initial_balance, restricted=restricted,
            overdraft=overdraft, **fields,
            audit=self.audit(actor, "user.create", "user",
                             note={"restricted": restricted, "overdraft": overdraft or Decimal(0),
                                   "initial_balance": initial_balance}))
        self.ctx.publish("user", user.id, "create", user.username)
        self.ctx.publish("account", user.personal_account_id, "create", user.username)
        if user.card_numbers:
            self.ctx.publish("card", op="create")
        return user

    async def update(self, actor: Actor, ref, **changes) -> User:
        """Change what `changes` names (`USER_CHANGES`); `password` or `pin` None removes it.
        An actor cannot disable or demote its own user (Conflict: it would lock itself out)."""
        require_admin(actor, "change users")
        unknown = set(changes) - set(USER_CHANGES)
        if unknown:
            raise TypeError(f"unknown user fields: {', '.join(sorted(unknown))}")
        user = await self.get(ref)
        fields = check_profile(changes)
        if actor.user_id == user.id and (fields.get("disabled") is True
                                         or fields.get("admin") is False):
            raise Conflict(f"{user.username} owns the token of this request; disabling or demoting "
                           "them would lock this token out (use another administrator's token)")
        for secret in ("password", "pin"):
            if secret in changes:
                value = changes[secret]
                fields[f"{secret}_hash"] = None if value is None else await self.ctx.hash_secret(value)
        if not fields:
            return user
        updated = await self.store.update_user(
            user.id, **fields, audit=self.audit(actor, "user.update", "user", before=user))
        self.ctx.publish("user", user.id, "update", user.username)
        if "card_numbers" in fields and tuple(fields["card_numbers"]) != tuple(user.card_numbers):
            self.ctx.publish("card")
        return updated

    async def upsert(self, actor: Actor, username: str, *, groups=(), restricted=None,
                     overdraft=None, initial_balance=None, **fields) -> tuple[User, bool]:
        """Create the user, or update the one of that name (an import row, a directory sync):
        the fields given change, `restricted` and `overdraft` apply to the personal account,
        `initial_balance` only to a new user; the user joins each of `groups` (created when
        missing). Fires with (User, created)."""
        require_admin(actor, "import users")
        R.USERNAME.check(username, "username")
        for i, name in enumerate(groups):
            R.NAME.check(name, f"groups[{i}]")
        try:
            user = await self.get(username)
        except NotFound:
            user = None
        if user is None:
            user = await self.create(actor, username, initial_balance=initial_balance,
                                     restricted=True if restricted is None else restricted,
                                     overdraft=overdraft, **fields)
            created = True
        else:
            if fields:
                user = await self.update(actor, user.id, **fields)
            account_changes = {}
            if restricted is not None:
                account_changes["restricted"] = restricted
            if overdraft is not None:
                account_changes["overdraft"] = overdraft
            if account_changes:
                await self.services.accounts.update(actor, user.personal_account_id,
                                                    **account_changes)
            created = False
        for name in groups:
            try:
                group = await self.services.groups.get(name)
            except NotFound:
                group = await self.services.groups.create(actor, name)
            await self.services.groups.add_member(actor, group.id, user.id)
        return user, created
