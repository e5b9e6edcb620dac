"""/accounts: personal and shared accounts, who may charge them, their ledgers and the
administrator's balance changes (`pcnet.app.services.accounts`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.domain.model import AccountKind
from pcnet.web import _schemas as S
from pcnet.web._fields import Boolean, Choice, Money, Object, Ref, Secret, String, Uuid
from pcnet.web.api._base import (
    ACCOUNT_REF,
    GROUP_REF,
    IDEMPOTENCY_KEY,
    PAGING,
    USER_REF,
    ApiBase,
    ledger_uuid,
    name_field,
    ref,
)

route = ApiBase.route

ACCOUNT_CREATE = Object({
    "name": name_field(required=True),
    "parent": Ref("account", nullable=True, description="the parent shared account (id or name)"),
    "pin": Secret(rule=R.PIN, nullable=True, description="a code users type to charge the account"),
    "restricted": Boolean(default=False),
    "overdraft": Money(rule=R.NON_NEGATIVE, default=R.NON_NEGATIVE.minimum),
    "comment": String(rule=R.COMMENT, default=""),
    "initial_balance": Money(rule=R.ANY_AMOUNT, nullable=True),
})
ACCOUNT_UPDATE = Object({
    "name": name_field(description="shared accounts only"),
    "parent": Ref("account", nullable=True, description="shared accounts only; null removes the parent"),
    "pin": Secret(rule=R.PIN, nullable=True, description="shared accounts only; null removes the PIN"),
    "restricted": Boolean(), "overdraft": Money(rule=R.NON_NEGATIVE),
    "comment": String(rule=R.COMMENT), "disabled": Boolean(),
}, min_fields=1)
ADJUST = Object({
    "amount": Money(rule=R.ADJUSTMENT, required=True,
                    description="added to the balance; negative to take money off"),
    "comment": String(rule=R.COMMENT, default=""),
    "uuid": Uuid(description="the ledger transaction's uuid; a repeat is applied once"),
})
SET_BALANCE = Object({
    "balance": Money(rule=R.ANY_AMOUNT, required=True, description="the new balance"),
    "comment": String(rule=R.COMMENT, default=""),
    "uuid": Uuid(description="the ledger transaction's uuid; a repeat is applied once"),
})


def _balance_change(txn, account) -> dict:
    return {"transaction": S.transaction_json(txn), "account": S.account_json(account)}


class AccountRoutes(ApiBase):
    @route("GET", "/accounts", summary="List accounts", tag="accounts",
           query={**PAGING, "kind": Choice(AccountKind, description="only personal or only shared accounts")},
           response=S.ACCOUNT_PAGE)
    async def list_accounts(self, call):
        q = call.query
        accounts, total = await self.services.accounts.list(q.get("kind"), q["offset"], q["limit"])
        return S.page_json(accounts, total, q["offset"], q["limit"], S.account_json)

    @route("POST", "/accounts", summary="Create a shared account", tag="accounts",
           body=ACCOUNT_CREATE, status=201, response=S.ACCOUNT, errors=(400, 404, 409))
    async def create_account(self, call):
        b = dict(call.body)
        if b.get("parent") is not None:
            b["parent"] = ref(b["parent"])
        return S.account_json(await self.services.accounts.create_shared(call.actor, b.pop("name"), **b))

    @route("GET", "/accounts/<account>", summary="Get an account by id (or a shared account by name)",
           tag="accounts", params={"account": ACCOUNT_REF}, response=S.ACCOUNT, errors=(400, 404))
    async def get_account(self, call):
        return S.account_json(await self.services.accounts.get(ref(call.params["account"])))

    @route("PATCH", "/accounts/<account>", summary="Change an account", tag="accounts",
           params={"account": ACCOUNT_REF}, body=ACCOUNT_UPDATE, response=S.ACCOUNT,
           errors=(400, 404, 409),
           description="Only the fields sent change. Name, parent and PIN apply to shared accounts only.")
    async def update_account(self, call):
        changes = dict(call.body)
        if changes.get("parent") is not None:
            changes["parent"] = ref(changes["parent"])
        return S.account_json(await self.services.accounts.update(
            call.actor, ref(call.params["account"]), **changes))

    @route("GET", "/accounts/<account>/access", summary="Who may charge a shared account",
           tag="accounts", params={"account": ACCOUNT_REF}, response=S.ACCESS, errors=(400, 404))
    async def account_access(self, call):
        return S.access_json(await self.services.accounts.access(ref(call.params["account"])))

    @route("PUT", "/accounts/<account>/access/users/<user>",
           summary="Let a user charge a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "user": USER_REF}, status=204, errors=(400, 404))
    async def grant_user_access(self, call):
        await self.services.accounts.grant(call.actor, ref(call.params["account"]),
                                           user=ref(call.params["user"]))

    @route("DELETE", "/accounts/<account>/access/users/<user>",
           summary="Stop a user charging a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "user": USER_REF}, status=204, errors=(400, 404))
    async def revoke_user_access(self, call):
        await self.services.accounts.revoke(call.actor, ref(call.params["account"]),
                                            user=ref(call.params["user"]))

    @route("PUT", "/accounts/<account>/access/groups/<group>",
           summary="Let a group's members charge a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "group": GROUP_REF}, status=204, errors=(400, 404))
    async def grant_group_access(self, call):
        await self.services.accounts.grant(call.actor, ref(call.params["account"]),
                                           group=ref(call.params["group"]))

    @route("DELETE", "/accounts/<account>/access/groups/<group>",
           summary="Stop a group's members charging a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "group": GROUP_REF}, status=204, errors=(400, 404))
    async def revoke_group_access(self, call):
        await self.services.accounts.revoke(call.actor, ref(call.params["account"]),
                                            group=ref(call.params["group"]))

    @route("POST", "/accounts/<account>/adjust", summary="Add to or take from a balance",
           tag="accounts", params={"account": ACCOUNT_REF}, headers=IDEMPOTENCY_KEY, body=ADJUST,
           response=S.BALANCE_CHANGE, errors=(400, 404, 409),
           description="Records an ADJUST ledger row. Idempotent with an `Idempotency-Key` header or "
                       "a `uuid` field: a repeat returns the original transaction and changes nothing; "
                       "reusing a key for a different adjustment is a 409.")
    async def adjust_balance(self, call):
        txn, account = await self.services.accounts.adjust(
            call.actor, ref(call.params["account"]), call.body["amount"], uuid=ledger_uuid(call),
            comment=call.body["comment"])
        return _balance_change(txn, account)

    @route("POST", "/accounts/<account>/set-balance", summary="Set a balance to an exact figure",
           tag="accounts", params={"account": ACCOUNT_REF}, headers=IDEMPOTENCY_KEY, body=SET_BALANCE,
           response=S.BALANCE_CHANGE, errors=(400, 404, 409),
           description="Records a SET ledger row holding the difference. Idempotent like adjust.")
    async def set_balance(self, call):
        txn, account = await self.services.accounts.set_balance(
            call.actor, ref(call.params["account"]), call.body["balance"], uuid=ledger_uuid(call),
            comment=call.body["comment"])
        return _balance_change(txn, account)

    @route("GET", "/accounts/<account>/transactions", summary="An account's ledger, newest first",
           tag="accounts", params={"account": ACCOUNT_REF}, query=PAGING,
           response=S.TRANSACTION_PAGE, errors=(400, 404))
    async def list_transactions(self, call):
        q = call.query
        txns, total = await self.services.accounts.transactions(ref(call.params["account"]),
                                                                q["offset"], q["limit"])
        return S.page_json(txns, total, q["offset"], q["limit"], S.transaction_json)
