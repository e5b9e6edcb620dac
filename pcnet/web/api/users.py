"""/users: users, their groups and personal accounts (`pcnet.app.services.users`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.web import _schemas as S
from pcnet.web._fields import Boolean, Email, ListOf, Money, Object, Secret, String
from pcnet.web.api._base import PAGING, USER_REF, ApiBase, page, ref

route = ApiBase.route

CARD = String(rule=R.CARD)
PASSWORD = dict(rule=R.PASSWORD, nullable=True)
PIN = dict(rule=R.PIN, nullable=True)

USER_FIELDS = {
    "full_name": String(rule=R.LINE, default=""),
    "email": Email(default=""),
    "department": String(rule=R.LINE, default=""),
    "office": String(rule=R.LINE, default=""),
    "card_numbers": ListOf(CARD, max_items=R.MAX_CARDS, unique=True, default=()),
    "password": Secret(**PASSWORD, description="stored as a slow salted hash; never returned"),
    "pin": Secret(**PIN, description="stored as a slow salted hash; never returned"),
    "admin": Boolean(default=False, description="may use the admin web and own API tokens"),
}
USER_CREATE = Object({
    "username": String(rule=R.USERNAME, required=True,
                       description="the login name; cannot be changed later"),
    **USER_FIELDS,
    "initial_balance": Money(rule=R.ANY_AMOUNT, nullable=True,
                             description="starting balance of the personal account"),
    "restricted": Boolean(default=True, description="the personal account may not go below "
                                                    "-overdraft (the default: a new user prints "
                                                    "only with credit)"),
    "overdraft": Money(rule=R.NON_NEGATIVE, nullable=True),
})
# An update has no defaults: only what is sent changes.
USER_UPDATE = Object({
    "full_name": String(rule=R.LINE), "email": Email(), "department": String(rule=R.LINE),
    "office": String(rule=R.LINE),
    "card_numbers": ListOf(CARD, max_items=R.MAX_CARDS, unique=True),
    "password": Secret(**PASSWORD, description="a new password; null removes it"),
    "pin": Secret(**PIN, description="a new PIN; null removes it"),
    "admin": Boolean(), "disabled": Boolean(),
}, min_fields=1)


class UserRoutes(ApiBase):
    @route("GET", "/users", summary="List users", tag="users",
           query={**PAGING, "search": String(min_length=1, max_length=128, strip_check=False,
                                             description="matches username, full name or e-mail")},
           response=S.USER_PAGE)
    async def list_users(self, call):
        q = call.query
        users, total = await self.services.users.list(q["offset"], q["limit"], q.get("search"))
        return S.page_json(users, total, q["offset"], q["limit"], S.user_json)

    @route("POST", "/users", summary="Create a user and their personal account", tag="users",
           body=USER_CREATE, status=201, response=S.USER, errors=(400, 409),
           description="New users are restricted unless `restricted` is false: their personal "
                       "account may not go below `-overdraft` (0 unless given).")
    async def create_user(self, call):
        b = dict(call.body)
        if b.get("overdraft") is None:
            b.pop("overdraft", None)
        user = await self.services.users.create(call.actor, b.pop("username"), **b)
        return S.user_json(user)

    @route("GET", "/users/<user>", summary="Get a user by id or username", tag="users",
           params={"user": USER_REF}, response=S.USER, errors=(400, 404))
    async def get_user(self, call):
        return S.user_json(await self.services.users.get(ref(call.params["user"])))

    @route("PATCH", "/users/<user>", summary="Change a user", tag="users",
           params={"user": USER_REF}, body=USER_UPDATE, response=S.USER, errors=(400, 404, 409),
           description="Only the fields sent change. `password` or `pin` null removes it. A token "
                       "cannot disable or demote its own user (409).")
    async def update_user(self, call):
        return S.user_json(await self.services.users.update(call.actor, ref(call.params["user"]),
                                                            **call.body))

    @route("GET", "/users/<user>/groups", summary="Groups a user belongs to", tag="users",
           params={"user": USER_REF}, query=PAGING, response=S.GROUP_PAGE, errors=(400, 404))
    async def user_groups(self, call):
        groups = await self.services.users.groups(ref(call.params["user"]))
        return page(groups, call.query["offset"], call.query["limit"], S.group_json)

    @route("GET", "/users/<user>/account", summary="A user's personal account", tag="accounts",
           params={"user": USER_REF}, response=S.ACCOUNT, errors=(400, 404))
    async def user_account(self, call):
        return S.account_json(await self.services.users.personal_account(ref(call.params["user"])))
