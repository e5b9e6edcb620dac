"""The `device` role of pcnet/1: the server side of the operations an embedded app on an MFD (or
any device gateway) calls, as an adapter over `IDeviceServices`.

docs/device-protocol.md is the specification for the device side. The device says hello with
role `device` and its node name (the configured device's name); from then on it may call
`device.sign_in`, `device.accounts`, `device.quote`, `device.held_jobs`, `device.release`,
`device.cancel`, `device.usage`, `device.sign_out` and `device.status`.

A signed-in user is named by an opaque `session` token that `device.sign_in` returns, never by
a user id the device could make up: a device can only act for people who signed in at it, on
this connection. At most `MAX_SESSIONS` are open per connection (the oldest is closed first);
all of them end with the connection.

`DeviceOps(services_for)` registers the handlers in an `Operations` registry;
`services_for(node_name)` gives the `IDeviceServices` of that device (a `NotFound` for a
device that is not configured). Every field is checked here: a wrong type, an over-long or
non-printable string, a number out of range is an `invalid` reply naming the field.
"""

from __future__ import annotations

import secrets
import weakref
from collections import OrderedDict

from twisted.internet import defer

from pcnet.devices._records import USAGE_KINDS, AccountChoice, DeviceState, DeviceStatus, HeldJob, Usage
from pcnet.domain.model import DEFAULT_PAPER_SIZE
from pcnet.errors import Forbidden, InvalidInput, Unauthorized
from pcnet.money import format_money

MAX_SESSIONS = 16
MAX_TEXT = 256


def _text(msg: dict, key: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
    value = msg.get(key)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{key}: required", field=key)
        return ""
    if type(value) is not str or len(value) > limit or not value.isprintable():
        raise InvalidInput(f"{key}: a string of at most {limit} printable characters", field=key)
    return value


def _count(msg: dict, key: str, default: int | None = None, maximum: int = 10_000_000) -> int:
    value = msg.get(key, default)
    if type(value) is not int or not 0 <= value <= maximum:
        raise InvalidInput(f"{key}: a whole number from 0 to {maximum:,}", field=key)
    return value


def _flag(msg: dict, key: str) -> bool:
    value = msg.get(key, False)
    if type(value) is not bool:
        raise InvalidInput(f"{key}: true or false", field=key)
    return value


def account_choice_wire(a: AccountChoice) -> dict:
    """An `AccountChoice` in a device reply (named apart from the admin API's `account_json`,
    which serialises a whole `Account`: one name, one meaning)."""
    return {"id": a.id, "name": a.name, "kind": a.kind, "balance": format_money(a.balance),
            "available": None if a.available is None else format_money(a.available),
            "restricted": a.restricted}


def device_held_job_wire(j: HeldJob) -> dict:
    """A device's `HeldJob` (a held job as a user at the device sees it) in a device reply."""
    return {"uuid": j.uuid, "document_name": j.document_name, "pages": j.pages,
            "colour_pages": j.colour_pages, "copies": j.copies, "duplex": j.duplex,
            "paper_size": j.paper_size, "cost": format_money(j.cost), "status": j.status,
            "created_at": j.created_at.isoformat() if j.created_at else None}


class _Sessions:
    """The users signed in on one connection: token -> (user id, username)."""

    def __init__(self):
        self.by_token: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def open(self, user_id: int, username: str) -> str:
        while len(self.by_token) >= MAX_SESSIONS:
            self.by_token.popitem(last=False)
        token = secrets.token_urlsafe(24)
        self.by_token[token] = (user_id, username)
        return token


class DeviceOps:
    def __init__(self, services_for):
        self.services_for = services_for
        self._sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def register(self, ops):
        for name, handler in (
            ("device.sign_in", self.sign_in), ("device.accounts", self.accounts),
            ("device.quote", self.quote), ("device.held_jobs", self.held_jobs),
            ("device.release", self.release), ("device.cancel", self.cancel),
            ("device.usage", self.usage), ("device.sign_out", self.sign_out),
            ("device.status", self.status),
        ):
            ops.register(name, self._guarded(handler))
        return ops

    def _guarded(self, handler):
        def handle(session, msg):
            if getattr(session, "role", None) != "device" or not getattr(session, "node", None):
                raise Forbidden("only an approved device may do this")
            return defer.ensureDeferred(handler(session, msg))

        return handle

    def _services(self, session):
        return self.services_for(session.node)

    def _table(self, session) -> _Sessions:
        table = self._sessions.get(session)
        if table is None:
            table = self._sessions[session] = _Sessions()
        return table

    def _user(self, session, msg) -> tuple[str, int]:
        token = _text(msg, "session", limit=64)
        found = self._table(session).by_token.get(token)
        if found is None:
            raise Unauthorized("no such session: sign the user in again", code="session_unknown")
        return token, found[0]

    # --- the operations ----------------------------------------------------------------------

    async def sign_in(self, session, msg):
        services = self._services(session)
        method = _text(msg, "method", limit=16)
        if method == "card":
            identity = await services.authenticate_card(_text(msg, "card", limit=64))
        elif method == "card_pin":
            identity = await services.authenticate_card_pin(_text(msg, "card", limit=64),
                                                            _text(msg, "pin", limit=64))
        elif method == "password":
            identity = await services.authenticate_password(_text(msg, "username"),
                                                            _text(msg, "password", limit=1024))
        else:
            raise InvalidInput("method: card, card_pin or password", field="method")
        accounts = await services.accounts(identity.user_id)
        token = self._table(session).open(identity.user_id, identity.username)
        return {"session": token,
                "user": {"username": identity.username, "full_name": identity.full_name},
                "accounts": [account_choice_wire(a) for a in accounts]}

    async def accounts(self, session, msg):
        _, user_id = self._user(session, msg)
        accounts = await self._services(session).accounts(user_id)
        return {"accounts": [account_choice_wire(a) for a in accounts]}

    def _usage(self, msg, user_id, *, uuid: str) -> Usage:
        kind = _text(msg, "kind", limit=8)
        if kind not in USAGE_KINDS:
            raise InvalidInput(f"kind: one of {', '.join(USAGE_KINDS)}", field="kind")
        account = msg.get("account_id")
        if account is not None and (type(account) is not int or account < 1):
            raise InvalidInput("account_id: an account id from device.accounts", field="account_id")
        return Usage(uuid, kind, user_id, _count(msg, "pages"), _count(msg, "colour_pages", 0),
                     _flag(msg, "duplex"), _text(msg, "paper_size", required=False, limit=32) or DEFAULT_PAPER_SIZE,
                     account, _text(msg, "document_name", required=False))

    async def quote(self, session, msg):
        _, user_id = self._user(session, msg)
        cost = await self._services(session).quote_usage(self._usage(msg, user_id, uuid="quote-000"))
        return {"cost": format_money(cost)}

    async def held_jobs(self, session, msg):
        _, user_id = self._user(session, msg)
        jobs = await self._services(session).held_jobs(user_id)
        return {"jobs": [device_held_job_wire(j) for j in jobs]}

    async def release(self, session, msg):
        _, user_id = self._user(session, msg)
        job = await self._services(session).release_job(user_id, _text(msg, "job", limit=64))
        return {"job": device_held_job_wire(job)}

    async def cancel(self, session, msg):
        _, user_id = self._user(session, msg)
        job = await self._services(session).cancel_job(user_id, _text(msg, "job", limit=64))
        return {"job": device_held_job_wire(job)}

    async def usage(self, session, msg):
        _, user_id = self._user(session, msg)
        uuid = _text(msg, "uuid", limit=64)
        if len(uuid) < 8:
            raise InvalidInput("uuid: 8 to 64 characters, unique per job of this device", field="uuid")
        receipt = await self._services(session).record_usage(self._usage(msg, user_id, uuid=uuid))
        return {"uuid": receipt.uuid, "cost": format_money(receipt.cost),
                "account_id": receipt.account_id, "balance_after": format_money(receipt.balance_after),
                "repeated": receipt.repeated}

    async def sign_out(self, session, msg):
        token, _ = self._user(session, msg)
        self._table(session).by_token.pop(token, None)
        return {}

    async def status(self, session, msg):
        raw = _text(msg, "state", limit=16)
        try:
            state = DeviceState(raw)
        except ValueError:
            raise InvalidInput("state: up, warning, error, down or unknown", field="state") from None
        await self._services(session).report_status(DeviceStatus(state, _text(msg, "detail", required=False)))
        return {}
