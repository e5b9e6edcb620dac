"""The admin JSON API, mounted at `/api/v1`: users, groups, accounts and their ledgers,
printers, quotas, the job log, job import and API tokens, for scripts and integrations.

`AdminApi` is a Klein app class; its routes are declared with `RouteTable`, which validates
every request against field specs (`_fields`) before a handler runs and generates the OpenAPI
document (`GET /api/v1/openapi.json`) from the same declarations. Every error, whatever its
cause, is answered as `{"error": {"code": ..., "message": ...}}`; input problems are 4xx naming
the field, and only bugs are 500s (logged, without request bodies or headers, so no secret
reaches the log).

Admin routes take an API token (`Authorization: Bearer`). The `/me` routes act for one user
instead: HTTP Basic with that user's username and password, checked off the reactor thread
through the server's sign-in throttle (`pcnet.app.throttle`: per address and global budgets,
no lock-out a stranger can cause); a user sees, releases and cancels
only their own held jobs, and another user's job is answered 404 like a missing one.

Writes that change what the job service caches (printers, users, accounts) tell its
`JobDirectory` to forget the record, so the next job sees the change.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import uuid as uuidlib
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

from klein import Klein
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

from pcnet.domain.model import (
    MAX_COUNT,
    AccountKind,
    CostModel,
    FailureMode,
    Filters,
    HoldMode,
    JobRequest,
    JobStatus,
    LedgerEntry,
    QuotaPeriod,
    TransactionKind,
)
from pcnet.domain.enrolment import (
    DEFAULT_CODE_HOURS,
    MAX_CODE_HOURS,
    NODE_NAME_HINT,
    NODE_NAME_PATTERN,
    NodeRole,
)
from pcnet.domain.quotas import next_boundary
from pcnet.app.throttle import SignInThrottle, TooManyAttempts
from pcnet.domain.secrets import hash_secret, hash_token, new_token
from pcnet.errors import Conflict, Forbidden, NotFound, PcnetError, Unauthorized
from pcnet.net.limits import source_key
from pcnet.net.registry import NodeStatus
from pcnet.store import QUARANTINE_STATES
from pcnet.web import _schemas as S
from pcnet.web._fields import (
    MAX_MONEY,
    Boolean,
    Choice,
    Email,
    Id,
    Integer,
    InvalidField,
    ListOf,
    MapOf,
    Money,
    Object,
    Pattern,
    Ref,
    RefValue,
    Secret,
    String,
    Timestamp,
    Uuid,
)
from pcnet.web._openapi import openapi_document
from pcnet.web._routes import MAX_BODY, RouteTable, json_bytes

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"

# --- field specs shared by several routes --------------------------------------------------

PAGING = {
    "offset": Integer(minimum=0, maximum=10_000_000, default=0, description="records to skip"),
    "limit": Integer(minimum=1, maximum=1000, default=100, description="records per page (at most 1000)"),
}
ZERO = Decimal("0.0000")
ANY_MONEY = {"minimum": -MAX_MONEY, "maximum": MAX_MONEY}
NAME = dict(min_length=1, max_length=128)


def _username(**kw) -> String:
    return String(min_length=1, max_length=128, pattern=r"[^/\s]+",
                  pattern_hint="must not contain spaces or slashes", **kw)


CARD = String(min_length=1, max_length=64, pattern=r"\S+", pattern_hint="must not contain spaces")
PIN_PATTERN = dict(pattern=r"[0-9A-Za-z]{4,32}", pattern_hint="must be 4 to 32 letters or digits")
TEXT = dict(max_length=255)
COMMENT = dict(max_length=1000, multiline=True, strip_check=False)

USER_REF = Ref("user", description="a user id, or a username (`name:` before a username made only of digits)")
GROUP_REF = Ref("group", description="a group id or name (`name:` before a name made only of digits)")
ACCOUNT_REF = Ref("account", description="an account id, or a shared account's name (`name:` before a name made only of digits)")
PRINTER_REF = Ref("printer", description="a printer id or name (`name:` before a name made only of digits)")

IDEMPOTENCY_KEY = {
    "Idempotency-Key": String(min_length=1, max_length=255, pattern=r"[\x21-\x7e]+",
                              pattern_hint="must be 1 to 255 visible ASCII characters",
                              description="repeat a request with the same key to apply it only once"),
}

USER_FIELDS = {
    "full_name": String(**TEXT, default=""),
    "email": Email(default=""),
    "department": String(**TEXT, default=""),
    "office": String(**TEXT, default=""),
    "card_numbers": ListOf(CARD, max_items=20, unique=True, default=()),
    "password": Secret(min_length=1, max_length=1024, strip_check=False, nullable=True,
                       description="stored as a slow salted hash; never returned"),
    "pin": Secret(**PIN_PATTERN, nullable=True, description="stored as a slow salted hash; never returned"),
    "admin": Boolean(default=False, description="may use the admin web and own API tokens"),
}
USER_CREATE = Object({
    "username": _username(required=True, description="the login name; cannot be changed later"),
    **USER_FIELDS,
    "initial_balance": Money(**ANY_MONEY, nullable=True, description="starting balance of the personal account"),
    "restricted": Boolean(default=True, description="the personal account may not go below -overdraft"),
    "overdraft": Money(minimum=ZERO, maximum=MAX_MONEY, nullable=True),
})
# An update has no defaults: only what is sent changes.
USER_UPDATE = Object({
    "full_name": String(**TEXT), "email": Email(), "department": String(**TEXT),
    "office": String(**TEXT), "card_numbers": ListOf(CARD, max_items=20, unique=True),
    "password": Secret(min_length=1, max_length=1024, strip_check=False, nullable=True,
                       description="a new password; null removes it"),
    "pin": Secret(**PIN_PATTERN, nullable=True, description="a new PIN; null removes it"),
    "admin": Boolean(), "disabled": Boolean(),
}, min_fields=1)

GROUP_CREATE = Object({
    "name": String(**NAME, required=True),
    "description": String(**COMMENT, default=""),
})

ACCOUNT_CREATE = Object({
    "name": String(**NAME, required=True),
    "parent": Ref("account", nullable=True, description="the parent shared account (id or name)"),
    "pin": Secret(**PIN_PATTERN, nullable=True, description="a code users type to charge the account"),
    "restricted": Boolean(default=False),
    "overdraft": Money(minimum=ZERO, maximum=MAX_MONEY, default=ZERO),
    "comment": String(**COMMENT, default=""),
    "initial_balance": Money(**ANY_MONEY, nullable=True),
})
ACCOUNT_UPDATE = Object({
    "name": String(**NAME, description="shared accounts only"),
    "parent": Ref("account", nullable=True, description="shared accounts only; null removes the parent"),
    "pin": Secret(**PIN_PATTERN, nullable=True, description="shared accounts only; null removes the PIN"),
    "restricted": Boolean(), "overdraft": Money(minimum=ZERO, maximum=MAX_MONEY),
    "comment": String(**COMMENT), "disabled": Boolean(),
}, min_fields=1)
ADJUST = Object({
    "amount": Money(**ANY_MONEY, nonzero=True, required=True,
                    description="added to the balance; negative to take money off"),
    "comment": String(**COMMENT, default=""),
    "uuid": Uuid(description="the ledger transaction's uuid; a repeat is applied once"),
})
SET_BALANCE = Object({
    "balance": Money(**ANY_MONEY, required=True, description="the new balance"),
    "comment": String(**COMMENT, default=""),
    "uuid": Uuid(description="the ledger transaction's uuid; a repeat is applied once"),
})

# Bounds keep every job cost far inside the ledger's 64-bit minor units.
PRICE = dict(minimum=ZERO, maximum=Decimal(1000))
SIZE_NAME = String(min_length=1, max_length=32, pattern=r"[A-Za-z0-9_.+\-]+",
                   pattern_hint="must be letters, digits, '_', '.', '+' or '-'")
COST_MODEL_FIELDS = {
    "grey": Money(**PRICE, description="price of a grey side"),
    "colour": Money(**PRICE, description="price of a colour side"),
    "duplex_discount": Money(**PRICE, description="taken off each side printed in duplex"),
    "sizes": MapOf(SIZE_NAME, Object({"grey": Money(**PRICE, required=True),
                                      "colour": Money(**PRICE, required=True)}),
                   max_items=50, description="prices per paper size; replaced as a whole"),
}
FILTER_FIELDS = {
    "max_pages": Integer(minimum=1, maximum=1_000_000, nullable=True, description="pages x copies; null: no limit"),
    "max_copies": Integer(minimum=1, maximum=100_000, nullable=True),
    "max_cost": Money(minimum=ZERO, maximum=MAX_MONEY, nullable=True),
    "grey_only": Boolean(), "duplex_only": Boolean(),
    "deny_document_patterns": ListOf(Pattern(), max_items=50,
                                     description="case-insensitive regular expressions"),
    "duplicate_window_seconds": Integer(minimum=1, maximum=30 * 86400, nullable=True),
}
COST_MODEL = Object(COST_MODEL_FIELDS, description="missing keys keep their current (or default) value")
FILTERS = Object(FILTER_FIELDS, description="missing keys keep their current (or default) value")
PRINTER_FIELDS = {
    "server": String(**TEXT), "queue": String(**TEXT), "location": String(**TEXT),
    "cost_model": COST_MODEL, "filters": FILTERS,
    "hold_mode": Choice(HoldMode), "failure_mode": Choice(FailureMode),
    "pdl": String(max_length=32), "disabled": Boolean(),
}
PRINTER_CREATE = Object({"name": String(**NAME, required=True), **PRINTER_FIELDS})
PRINTER_UPDATE = Object({"name": String(**NAME, description="renaming keeps the id and history"),
                         **PRINTER_FIELDS}, min_fields=1)

QUOTA_CREATE = Object({
    "group": Ref("group", required=True),
    "amount": Money(minimum=Decimal("0.0001"), maximum=MAX_MONEY, required=True),
    "period": Choice(QuotaPeriod, required=True),
    "cap": Money(minimum=ZERO, maximum=MAX_MONEY, nullable=True,
                 description="an allocation never lifts a balance above the cap"),
})
QUOTA_UPDATE = Object({
    "amount": Money(minimum=Decimal("0.0001"), maximum=MAX_MONEY),
    "period": Choice(QuotaPeriod, description="changing it reschedules the next allocation"),
    "cap": Money(minimum=ZERO, maximum=MAX_MONEY, nullable=True),
    "next_due_at": Timestamp(),
}, min_fields=1)

JOB_IMPORT = Object({
    "username": String(min_length=1, max_length=128, required=True),
    "printer": Ref("printer", required=True),
    # Up to what the job log stores: a job over the server's job limits is denied (and logged)
    # by the decision, as on every other way in.
    "pages": Integer(minimum=0, maximum=MAX_COUNT, required=True, description="pages of one copy"),
    "colour_pages": Integer(minimum=0, maximum=MAX_COUNT, default=0),
    "duplex": Boolean(default=False),
    "copies": Integer(minimum=1, maximum=MAX_COUNT, default=1),
    "paper_size": String(min_length=1, max_length=32, default="A4"),
    "document_name": String(max_length=1000, strip_check=False, default=""),
    "account": Ref("account", nullable=True,
                   description="a shared account to charge instead of the user's personal one"),
    "client": String(**TEXT, default="", description="the submitting machine"),
    "uuid": Uuid(description="the job's identity; a repeat is recorded and charged once"),
})
JOB_FILTERS = {
    **PAGING,
    "user": USER_REF, "printer": PRINTER_REF, "account": ACCOUNT_REF,
    "status": Choice(JobStatus),
    "since": Timestamp(description="jobs at or after this time"),
    "until": Timestamp(description="jobs before this time"),
    "problem": Boolean(description="true: only jobs with a problem for an administrator (printed "
                                   "offline outside the job limits or the account rules); false: "
                                   "only jobs without one"),
}
HELD_RELEASE = Object({
    "printer": Ref("printer", nullable=True,
                   description="Find-Me: the printer to print at (same print server, same page "
                               "description language); omit for a job held on a physical printer"),
})
HELD_CANCEL = Object({
    "reason": String(max_length=255, default="cancelled by an administrator",
                     description="recorded in the job log"),
})
MY_CANCEL = Object({
    "reason": String(max_length=255, description="recorded in the job log after who cancelled it"),
})
TOKEN_CREATE = Object({
    "name": String(**NAME, required=True, description="what the token is for"),
    "user": Ref("user", nullable=True, description="the administrator the token acts for"),
})


NODE_NAME = String(min_length=1, max_length=255, strip_check=False, description="the node's name")
NODE_INVITE = Object({
    "name": String(min_length=1, max_length=255, pattern=NODE_NAME_PATTERN, required=True,
                   pattern_hint=NODE_NAME_HINT,
                   description="the node's name, as it will say hello (a provider's [provider] name)"),
    "role": Choice(NodeRole, default=NodeRole.PROVIDER),
    "expires_hours": Integer(minimum=1, maximum=MAX_CODE_HOURS, default=DEFAULT_CODE_HOURS,
                             description="how long the code is valid"),
    "approve": Boolean(description="whether enrolling approves the node at once; default: yes, "
                                   "except for a Site Server, which then waits for an administrator"),
})
QuarantineState = enum.Enum("QuarantineState", {s.upper(): s for s in QUARANTINE_STATES})
QUARANTINE_FILTERS = {
    **PAGING,
    "node": NODE_NAME,
    "state": Choice(QuarantineState, description="quarantined: kept aside on the print server; "
                                                 "retrying: sent back into its journal; resolved: "
                                                 "replayed and acknowledged"),
}


class NoProviderSupport(PcnetError):
    """The server was built without the Print Provider operations (pcnet.app.provider_ops)."""

    code = "unavailable"
    http_status = 503


BASIC_CHALLENGE = 'Basic realm="pcnet"'


class Unauthenticated(Unauthorized):
    """No usable bearer token (or, on /me, no valid username and password); answered with a
    `WWW-Authenticate` challenge."""

    def __init__(self, message: str, *, invalid: bool = False, challenge: str | None = None):
        super().__init__(message)
        self.challenge = challenge or ('Bearer realm="pcnet"' + (', error="invalid_token"' if invalid else ""))


_WRONG_LOGIN = "Authorization: wrong username or password, or the user is disabled"


def _basic_credentials(header: str) -> tuple[str, str]:
    """`Basic <base64 of username:password>` (UTF-8, RFC 7617) -> (username, password)."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Unauthenticated("Authorization: this route acts for a user: send the user's name and "
                              "password with HTTP Basic authentication, not an API token",
                              challenge=BASIC_CHALLENGE)
    encoded = encoded.strip()
    try:
        if not encoded or len(encoded) > 2048:
            raise ValueError
        username, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):   # UnicodeDecodeError is a ValueError
        raise Unauthenticated("Authorization: expected 'Basic <base64 of username:password>'",
                              challenge=BASIC_CHALLENGE) from None
    if not sep or not username or len(username) > 128 or len(password) > 1024:
        raise Unauthenticated(_WRONG_LOGIN, challenge=BASIC_CHALLENGE)
    return username, password


_TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _page(items: list, offset: int, limit: int, serialise) -> dict:
    return S.page_json(items[offset:offset + limit], len(items), offset, limit, serialise)


class AdminApi:
    """The admin JSON API. `AdminApi(store, jobs, clock).resource()` is mounted at /api/v1
    (see `mount`)."""

    app = Klein()
    # Paths are matched exactly as sent: no redirects for doubled or trailing slashes.
    app.url_map.merge_slashes = False
    route = RouteTable(app)
    log = Logger()

    def __init__(self, store, jobs, clock, *, max_body: int = MAX_BODY, provider_ops=None,
                 nodes=None, signin: SignInThrottle | None = None):
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self.max_body = max_body
        # Held jobs (release, cancel) go through the Print Provider operations
        # (pcnet.app.provider_ops); without them those routes answer 503.
        self.provider_ops = provider_ops
        # Node enrolment and approval: the server's registry, which also closes the connection
        # of a node that is deleted or rejected; a registry of its own otherwise.
        if nodes is None:
            from pcnet.app.provider_ops import StoreNodeRegistry

            nodes = StoreNodeRegistry(store, clock)
        self.nodes = nodes
        # Password hashing is deliberately slow: off the reactor thread when there is one.
        self._threads = clock if IReactorThreads.providedBy(clock) else None
        # Password checks: per address and global budgets, shared with every other way in
        # that checks a password (the server passes its one instance).
        self.signin = signin if signin is not None else SignInThrottle(clock)

    # --- plumbing --------------------------------------------------------------------------

    def resource(self):
        """The API's resource; mount it at /api/v1 (see `mount`)."""
        return _Utf8Guard(self.app.resource())

    def mount(self, root: Resource) -> None:
        """Put the API at `/api/v1` under a `twisted.web` root resource."""
        api = root.children.get(b"api")
        if api is None:
            api = Resource()
            root.putChild(b"api", api)
        api.putChild(b"v1", self.resource())

    @classmethod
    def routes(cls):
        return list(cls.route.routes)

    @classmethod
    def openapi(cls) -> dict:
        """The OpenAPI 3.1 document of the API (a new dict each call)."""
        return openapi_document(
            cls.route.routes, title="pcnet admin API", version=API_VERSION,
            server_url=API_PREFIX,
            description="Administer pcnet: users, groups, accounts and ledgers, printers, "
                        "quotas, the job log and API tokens. Send `Authorization: Bearer <token>`; "
                        "the /me routes instead take a user's username and password (HTTP Basic) "
                        "and act for that user only. "
                        "Money is a string with up to 4 decimal places, times are ISO-8601 UTC. "
                        "Every error is `{\"error\": {\"code\", \"message\"}}`.")

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), tz=timezone.utc)

    async def _slow(self, function, *args):
        if self._threads is not None:
            return await deferToThreadPool(self._threads, self._threads.getThreadPool(),
                                           function, *args)
        return function(*args)

    async def _hash(self, secret: str) -> str:
        return await self._slow(hash_secret, secret)

    async def _authenticate(self, request, scheme: str = "bearer"):
        if scheme == "basic":
            return await self._authenticate_user(request)
        header = request.getHeader(b"authorization")
        if header is None:
            raise Unauthenticated("Authorization: send the header 'Authorization: Bearer <token>'")
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("Authorization: expected 'Bearer <token>'")
        if len(token) > 512 or not _TOKEN_SYNTAX.fullmatch(token):
            raise Unauthenticated("Authorization: unknown or revoked API token", invalid=True)
        record = await self.store.find_api_token(hash_token(token))
        if record is None:
            raise Unauthenticated("Authorization: unknown or revoked API token", invalid=True)
        if record.user_id is not None:
            try:
                user = await self.store.get_user(record.user_id)
            except NotFound:
                raise Unauthenticated("Authorization: the token's user no longer exists", invalid=True) from None
            if user.disabled or not user.admin:
                raise Forbidden(f"the token's user {user.username} is disabled or not an administrator")
        return record

    async def _authenticate_user(self, request):
        """The enabled user whose username and password came with HTTP Basic (the /me routes).
        Unknown user, no password, wrong password and disabled user all get the same 401."""
        header = request.getHeader(b"authorization")
        if header is None:
            raise Unauthenticated("Authorization: send your username and password with HTTP Basic "
                                  "authentication", challenge=BASIC_CHALLENGE)
        username, password = _basic_credentials(header.decode("latin-1"))
        attempt = self.signin.begin(source_key(request.getClientAddress()), username)
        try:
            user = await self.store.get_user_by_name(username)
        except NotFound:
            user = None
        except BaseException:
            attempt.abandon()
            raise
        ok = await attempt.check(password, user.password_hash if user is not None else None,
                                 allowed=user is not None and not user.disabled)
        if not ok:
            raise Unauthenticated(_WRONG_LOGIN, challenge=BASIC_CHALLENGE)
        return user

    @app.handle_errors(Exception)
    def _on_error(self, request, failure):
        error = failure.value
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if isinstance(error, PcnetError):
            status, body = error.http_status, error.to_json()
            if isinstance(error, Unauthenticated):
                request.setHeader(b"www-authenticate", error.challenge.encode())
            elif isinstance(error, TooManyAttempts):
                request.setHeader(b"retry-after", str(error.retry_after).encode())
        elif isinstance(error, RouteNotFound):
            status, body = 404, {"code": "not_found", "message": f"no such route: {_path(request)}"}
        elif isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or ())
            request.setHeader(b"allow", ", ".join(allowed).encode())
            status, body = 405, {"code": "method_not_allowed",
                                 "message": f"{request.method.decode('latin-1')} is not allowed here; "
                                            f"use {', '.join(allowed)}"}
        elif isinstance(error, HTTPException) and error.code and 400 <= error.code < 500:
            status, body = error.code, {"code": "http_error", "message": error.description or error.name}
        else:
            ref = uuidlib.uuid4().hex[:12]
            # Only the method, path and failure: bodies and headers may hold secrets.
            self.log.failure("admin API: unexpected error {ref} in {method} {path}", failure,
                             ref=ref, method=request.method.decode("latin-1"), path=_path(request))
            status, body = 500, {"code": "internal",
                                 "message": f"internal error (reference {ref}); see the server log"}
        request.setResponseCode(status)
        return json_bytes({"error": body})

    # --- lookups by reference ----------------------------------------------------------------

    async def _user(self, ref):
        if isinstance(ref, RefValue):
            return await self.store.get_user_by_name(ref.name)
        return await self.store.get_user(ref)

    async def _group(self, ref):
        if isinstance(ref, RefValue):
            return await self.store.get_group_by_name(ref.name)
        return await self.store.get_group(ref)

    async def _account(self, ref):
        if isinstance(ref, RefValue):
            return await self.store.get_account_by_name(ref.name)
        return await self.store.get_account(ref)

    async def _shared_account(self, ref, field: str = "account"):
        account = await self._account(ref)
        if AccountKind(account.kind) is not AccountKind.SHARED:
            raise InvalidField(field, f"account {account.id} is a personal account; this needs a shared one")
        return account

    async def _printer(self, ref):
        if isinstance(ref, RefValue):
            return await self.store.get_printer_by_name(ref.name)
        return await self.store.get_printer(ref)

    # --- index and document ------------------------------------------------------------------

    @route("GET", "/", summary="What this API is", tag="meta", auth=False,
           response=S.INDEX, errors=())
    async def index(self, call):
        return {"name": "pcnet admin API", "version": API_VERSION, "openapi": f"{API_PREFIX}/openapi.json"}

    @route("GET", "/openapi.json", summary="The OpenAPI 3.1 document of this API", tag="meta",
           auth=False, response={"type": "object", "description": "an OpenAPI 3.1 document"},
           errors=())
    async def openapi_json(self, call):
        return self.openapi()

    # --- users ---------------------------------------------------------------------------------

    @route("GET", "/users", summary="List users", tag="users",
           query={**PAGING, "search": String(min_length=1, max_length=128, strip_check=False,
                                             description="matches username, full name or e-mail")},
           response=S.USER_PAGE)
    async def list_users(self, call):
        q = call.query
        users, total = await self.store.list_users(offset=q["offset"], limit=q["limit"],
                                                   search=q.get("search"))
        return S.page_json(users, total, q["offset"], q["limit"], S.user_json)

    @route("POST", "/users", summary="Create a user and their personal account", tag="users",
           body=USER_CREATE, status=201, response=S.USER, errors=(400, 409))
    async def create_user(self, call):
        b = dict(call.body)
        username = b.pop("username")
        password, pin = b.pop("password", None), b.pop("pin", None)
        if password is not None:
            b["password_hash"] = await self._hash(password)
        if pin is not None:
            b["pin_hash"] = await self._hash(pin)
        if b.get("overdraft") is None:
            b.pop("overdraft", None)
        user = await self.store.create_user(username, **b)
        self.jobs.directory.forget_user(username)
        return S.user_json(user)

    @route("GET", "/users/<user>", summary="Get a user by id or username", tag="users",
           params={"user": USER_REF}, response=S.USER, errors=(400, 404))
    async def get_user(self, call):
        return S.user_json(await self._user(call.params["user"]))

    @route("PATCH", "/users/<user>", summary="Change a user", tag="users",
           params={"user": USER_REF}, body=USER_UPDATE, response=S.USER, errors=(400, 404, 409),
           description="Only the fields sent change. `password` or `pin` null removes it. A token "
                       "cannot disable or demote its own user (409).")
    async def update_user(self, call):
        user = await self._user(call.params["user"])
        changes = dict(call.body)
        if call.token.user_id == user.id and (changes.get("disabled") is True or changes.get("admin") is False):
            raise Conflict(f"{user.username} owns the token of this request; disabling or demoting "
                           "them would lock this token out (use another administrator's token)")
        if "password" in changes:
            p = changes.pop("password")
            changes["password_hash"] = None if p is None else await self._hash(p)
        if "pin" in changes:
            p = changes.pop("pin")
            changes["pin_hash"] = None if p is None else await self._hash(p)
        updated = await self.store.update_user(user.id, **changes)
        self.jobs.directory.forget_user(user.username)
        return S.user_json(updated)

    @route("GET", "/users/<user>/groups", summary="Groups a user belongs to", tag="users",
           params={"user": USER_REF}, query=PAGING, response=S.GROUP_PAGE, errors=(400, 404))
    async def user_groups(self, call):
        user = await self._user(call.params["user"])
        groups = await self.store.user_groups(user.id)
        return _page(groups, call.query["offset"], call.query["limit"], S.group_json)

    @route("GET", "/users/<user>/account", summary="A user's personal account", tag="accounts",
           params={"user": USER_REF}, response=S.ACCOUNT, errors=(400, 404))
    async def user_account(self, call):
        user = await self._user(call.params["user"])
        if user.personal_account_id is None:
            raise NotFound(f"user {user.username} has no personal account")
        return S.account_json(await self.store.get_account(user.personal_account_id))

    # --- groups --------------------------------------------------------------------------------

    @route("GET", "/groups", summary="List groups", tag="groups", query=PAGING, response=S.GROUP_PAGE)
    async def list_groups(self, call):
        groups = await self.store.list_groups()
        return _page(groups, call.query["offset"], call.query["limit"], S.group_json)

    @route("POST", "/groups", summary="Create a group", tag="groups", body=GROUP_CREATE,
           status=201, response=S.GROUP, errors=(400, 409))
    async def create_group(self, call):
        b = call.body
        return S.group_json(await self.store.create_group(b["name"], b["description"]))

    @route("GET", "/groups/<group>", summary="Get a group by id or name", tag="groups",
           params={"group": GROUP_REF}, response=S.GROUP, errors=(400, 404))
    async def get_group(self, call):
        return S.group_json(await self._group(call.params["group"]))

    @route("GET", "/groups/<group>/members", summary="Members of a group", tag="groups",
           params={"group": GROUP_REF}, query=PAGING, response=S.USER_PAGE, errors=(400, 404))
    async def group_members(self, call):
        group = await self._group(call.params["group"])
        members = await self.store.group_members(group.id)
        return _page(members, call.query["offset"], call.query["limit"], S.user_json)

    @route("PUT", "/groups/<group>/members/<user>", summary="Add a user to a group (idempotent)",
           tag="groups", params={"group": GROUP_REF, "user": USER_REF}, status=204,
           errors=(400, 404))
    async def add_group_member(self, call):
        group = await self._group(call.params["group"])
        user = await self._user(call.params["user"])
        await self.store.add_group_member(group.id, user.id)

    @route("DELETE", "/groups/<group>/members/<user>",
           summary="Remove a user from a group (idempotent)", tag="groups",
           params={"group": GROUP_REF, "user": USER_REF}, status=204, errors=(400, 404))
    async def remove_group_member(self, call):
        group = await self._group(call.params["group"])
        user = await self._user(call.params["user"])
        await self.store.remove_group_member(group.id, user.id)

    # --- accounts ------------------------------------------------------------------------------

    @route("GET", "/accounts", summary="List accounts", tag="accounts",
           query={**PAGING, "kind": Choice(AccountKind, description="only personal or only shared accounts")},
           response=S.ACCOUNT_PAGE)
    async def list_accounts(self, call):
        q = call.query
        accounts, total = await self.store.list_accounts(kind=q.get("kind"), offset=q["offset"],
                                                         limit=q["limit"])
        return S.page_json(accounts, total, q["offset"], q["limit"], S.account_json)

    @route("POST", "/accounts", summary="Create a shared account", tag="accounts",
           body=ACCOUNT_CREATE, status=201, response=S.ACCOUNT, errors=(400, 404, 409))
    async def create_account(self, call):
        b = dict(call.body)
        name = b.pop("name")
        parent = b.pop("parent", None)
        if parent is not None:
            b["parent_id"] = (await self._shared_account(parent, "parent")).id
        pin = b.pop("pin", None)
        if pin is not None:
            b["pin_hash"] = await self._hash(pin)
        return S.account_json(await self.store.create_shared_account(name, **b))

    @route("GET", "/accounts/<account>", summary="Get an account by id (or a shared account by name)",
           tag="accounts", params={"account": ACCOUNT_REF}, response=S.ACCOUNT, errors=(400, 404))
    async def get_account(self, call):
        return S.account_json(await self._account(call.params["account"]))

    @route("PATCH", "/accounts/<account>", summary="Change an account", tag="accounts",
           params={"account": ACCOUNT_REF}, body=ACCOUNT_UPDATE, response=S.ACCOUNT,
           errors=(400, 404, 409),
           description="Only the fields sent change. Name, parent and PIN apply to shared accounts only.")
    async def update_account(self, call):
        account = await self._account(call.params["account"])
        changes = dict(call.body)
        if AccountKind(account.kind) is AccountKind.PERSONAL:
            for key in ("name", "parent", "pin"):
                if key in changes:
                    raise InvalidField(key, "only shared accounts have this; a personal account follows its user")
        if "parent" in changes:
            parent_ref = changes.pop("parent")
            changes["parent_id"] = None if parent_ref is None else await self._check_parent(account, parent_ref)
        if "pin" in changes:
            pin = changes.pop("pin")
            changes["pin_hash"] = None if pin is None else await self._hash(pin)
        updated = await self.store.update_account(account.id, **changes)
        self.jobs.directory.forget_account(account.id)
        return S.account_json(updated)

    async def _check_parent(self, account, parent_ref) -> int:
        parent = await self._shared_account(parent_ref, "parent")
        seen = {account.id}
        ancestor = parent
        while ancestor is not None:
            if ancestor.id in seen:
                raise InvalidField("parent", f"account {parent.id} is {account.name}'s own descendant (a loop)")
            seen.add(ancestor.id)
            ancestor = await self.store.get_account(ancestor.parent_id) if ancestor.parent_id else None
        return parent.id

    @route("GET", "/accounts/<account>/access", summary="Who may charge a shared account",
           tag="accounts", params={"account": ACCOUNT_REF}, response=S.ACCESS, errors=(400, 404))
    async def account_access(self, call):
        account = await self._shared_account(call.params["account"])
        return S.access_json(await self.store.account_access(account.id))

    @route("PUT", "/accounts/<account>/access/users/<user>",
           summary="Let a user charge a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "user": USER_REF}, status=204, errors=(400, 404))
    async def grant_user_access(self, call):
        account = await self._shared_account(call.params["account"])
        user = await self._user(call.params["user"])
        await self.store.grant_account_access(account.id, user_id=user.id)

    @route("DELETE", "/accounts/<account>/access/users/<user>",
           summary="Stop a user charging a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "user": USER_REF}, status=204, errors=(400, 404))
    async def revoke_user_access(self, call):
        account = await self._shared_account(call.params["account"])
        user = await self._user(call.params["user"])
        await self.store.revoke_account_access(account.id, user_id=user.id)

    @route("PUT", "/accounts/<account>/access/groups/<group>",
           summary="Let a group's members charge a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "group": GROUP_REF}, status=204, errors=(400, 404))
    async def grant_group_access(self, call):
        account = await self._shared_account(call.params["account"])
        group = await self._group(call.params["group"])
        await self.store.grant_account_access(account.id, group_id=group.id)

    @route("DELETE", "/accounts/<account>/access/groups/<group>",
           summary="Stop a group's members charging a shared account (idempotent)", tag="accounts",
           params={"account": ACCOUNT_REF, "group": GROUP_REF}, status=204, errors=(400, 404))
    async def revoke_group_access(self, call):
        account = await self._shared_account(call.params["account"])
        group = await self._group(call.params["group"])
        await self.store.revoke_account_access(account.id, group_id=group.id)

    def _ledger_uuid(self, call) -> str:
        """The ledger uuid of an adjustment: the body's `uuid`, else one derived from the
        Idempotency-Key header, else a new one."""
        body_uuid = call.body.get("uuid")
        key = call.headers.get("Idempotency-Key")
        key_uuid = None
        if key is not None:
            try:
                key_uuid = str(uuidlib.UUID(key)) if len(key) == 36 else None
            except ValueError:
                key_uuid = None
            if key_uuid is None:
                key_uuid = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"pcnet:api:idempotency-key:{key}"))
        if body_uuid and key_uuid and body_uuid != key_uuid:
            raise InvalidField("uuid", "differs from the Idempotency-Key header; send one or make them equal")
        return body_uuid or key_uuid or str(uuidlib.uuid4())

    @route("POST", "/accounts/<account>/adjust", summary="Add to or take from a balance",
           tag="accounts", params={"account": ACCOUNT_REF}, headers=IDEMPOTENCY_KEY, body=ADJUST,
           response=S.BALANCE_CHANGE, errors=(400, 404, 409),
           description="Records an ADJUST ledger row. Idempotent with an `Idempotency-Key` header or "
                       "a `uuid` field: a repeat returns the original transaction and changes nothing; "
                       "reusing a key for a different adjustment is a 409.")
    async def adjust_balance(self, call):
        account = await self._account(call.params["account"])
        amount = call.body["amount"]
        entry = LedgerEntry(uuid=self._ledger_uuid(call), account_id=account.id, amount=amount,
                            kind=TransactionKind.ADJUST, reference=f"api-token:{call.token.id}",
                            comment=call.body["comment"], origin="app")
        txn = await self.store.apply_ledger_entry(entry, guard=False)
        if (txn.account_id != account.id or TransactionKind(txn.kind) is not TransactionKind.ADJUST
                or txn.amount != amount):
            raise Conflict(f"uuid: {entry.uuid} was already used for a different transaction",
                           code="idempotency_conflict")
        self.jobs.directory.forget_account(account.id)
        return {"transaction": S.transaction_json(txn),
                "account": S.account_json(await self.store.get_account(account.id))}

    @route("POST", "/accounts/<account>/set-balance", summary="Set a balance to an exact figure",
           tag="accounts", params={"account": ACCOUNT_REF}, headers=IDEMPOTENCY_KEY, body=SET_BALANCE,
           response=S.BALANCE_CHANGE, errors=(400, 404, 409),
           description="Records a SET ledger row holding the difference. Idempotent like adjust.")
    async def set_balance(self, call):
        account = await self._account(call.params["account"])
        balance = call.body["balance"]
        txn_uuid = self._ledger_uuid(call)
        txn = await self.store.set_balance(account.id, balance, uuid=txn_uuid,
                                           comment=call.body["comment"], origin="app")
        if (txn.account_id != account.id or TransactionKind(txn.kind) is not TransactionKind.SET
                or txn.balance_after != balance):
            raise Conflict(f"uuid: {txn_uuid} was already used for a different transaction",
                           code="idempotency_conflict")
        self.jobs.directory.forget_account(account.id)
        return {"transaction": S.transaction_json(txn),
                "account": S.account_json(await self.store.get_account(account.id))}

    @route("GET", "/accounts/<account>/transactions", summary="An account's ledger, newest first",
           tag="accounts", params={"account": ACCOUNT_REF}, query=PAGING,
           response=S.TRANSACTION_PAGE, errors=(400, 404))
    async def list_transactions(self, call):
        account = await self._account(call.params["account"])
        q = call.query
        txns, total = await self.store.list_transactions(account.id, offset=q["offset"], limit=q["limit"])
        return S.page_json(txns, total, q["offset"], q["limit"], S.transaction_json)

    # --- printers ------------------------------------------------------------------------------

    @route("GET", "/printers", summary="List printers", tag="printers", query=PAGING,
           response=S.PRINTER_PAGE)
    async def list_printers(self, call):
        printers = await self.store.list_printers()
        return _page(printers, call.query["offset"], call.query["limit"], S.printer_json)

    @route("POST", "/printers", summary="Create a printer", tag="printers", body=PRINTER_CREATE,
           status=201, response=S.PRINTER, errors=(400, 409))
    async def create_printer(self, call):
        b = dict(call.body)
        name = b.pop("name")
        disabled = b.pop("disabled", False)
        b["cost_model"] = _cost_model(CostModel(), b.get("cost_model", {}))
        b["filters"] = _filters(Filters(), b.get("filters", {}))
        printer = await self.store.create_printer(name, **b)
        if disabled:
            printer = await self.store.update_printer(printer.id, disabled=True)
        return S.printer_json(printer)

    @route("GET", "/printers/<printer>", summary="Get a printer by id or name", tag="printers",
           params={"printer": PRINTER_REF}, response=S.PRINTER, errors=(400, 404))
    async def get_printer(self, call):
        return S.printer_json(await self._printer(call.params["printer"]))

    @route("PATCH", "/printers/<printer>", summary="Change a printer", tag="printers",
           params={"printer": PRINTER_REF}, body=PRINTER_UPDATE, response=S.PRINTER,
           errors=(400, 404, 409),
           description="Only the fields sent change; inside `cost_model` and `filters` only the keys "
                       "sent change (null turns a filter off); `sizes` is replaced as a whole. "
                       "A rename keeps the printer's id and history.")
    async def update_printer(self, call):
        printer = await self._printer(call.params["printer"])
        changes = dict(call.body)
        if "cost_model" in changes:
            changes["cost_model"] = _cost_model(printer.cost_model, changes["cost_model"])
        if "filters" in changes:
            changes["filters"] = _filters(printer.filters, changes["filters"])
        updated = await self.store.update_printer(printer.id, **changes)
        self.jobs.directory.forget_printer(printer.id)
        return S.printer_json(updated)

    @route("GET", "/printers/<printer>/names", summary="Every name a printer has had", tag="printers",
           params={"printer": PRINTER_REF}, response=S.PRINTER_NAMES, errors=(400, 404),
           description="Oldest first; `until` is null for the current name. Reports use it to "
                       "show jobs under the name the printer had at the time.")
    async def printer_names(self, call):
        printer = await self._printer(call.params["printer"])
        return {"items": [S.printer_name_json(n) for n in await self.store.printer_names(printer.id)]}

    # --- quotas --------------------------------------------------------------------------------

    @route("GET", "/quotas", summary="List quota schedules", tag="quotas", query=PAGING,
           response=S.QUOTA_PAGE)
    async def list_quotas(self, call):
        quotas = sorted(await self.store.list_quotas(), key=lambda q: q.id)
        return _page(quotas, call.query["offset"], call.query["limit"], S.quota_json)

    @route("POST", "/quotas", summary="Schedule a group quota", tag="quotas", body=QUOTA_CREATE,
           status=201, response=S.QUOTA, errors=(400, 404),
           description="The first allocation falls due at the next period boundary (midnight UTC; "
                       "Mondays for weekly, the 1st for monthly).")
    async def create_quota(self, call):
        b = call.body
        group = await self._group(b["group"])
        quota = await self.store.create_quota(group.id, b["amount"], b["period"], cap=b.get("cap"),
                                              next_due_at=next_boundary(b["period"], self.now()))
        return S.quota_json(quota)

    async def _quota(self, quota_id: int):
        for quota in await self.store.list_quotas():
            if quota.id == quota_id:
                return quota
        raise NotFound(f"no quota with id {quota_id}")

    @route("GET", "/quotas/<quota>", summary="Get a quota schedule", tag="quotas",
           params={"quota": Id()}, response=S.QUOTA, errors=(400, 404))
    async def get_quota(self, call):
        return S.quota_json(await self._quota(call.params["quota"]))

    @route("PATCH", "/quotas/<quota>", summary="Change a quota schedule", tag="quotas",
           params={"quota": Id()}, body=QUOTA_UPDATE, response=S.QUOTA, errors=(400, 404),
           description="A new period reschedules the next allocation to that period's next "
                       "boundary unless `next_due_at` is given too.")
    async def update_quota(self, call):
        quota = await self._quota(call.params["quota"])
        changes = dict(call.body)
        if "period" in changes and "next_due_at" not in changes and changes["period"] != quota.period:
            changes["next_due_at"] = next_boundary(changes["period"], self.now())
        return S.quota_json(await self.store.update_quota(quota.id, **changes))

    @route("DELETE", "/quotas/<quota>", summary="Delete a quota schedule", tag="quotas",
           params={"quota": Id()}, status=204, errors=(400, 404),
           description="Past allocations stay in the ledger.")
    async def delete_quota(self, call):
        quota = await self._quota(call.params["quota"])
        await self.store.delete_quota(quota.id)

    # --- jobs ----------------------------------------------------------------------------------

    @route("GET", "/jobs", summary="The job log, newest first", tag="jobs", query=JOB_FILTERS,
           response=S.JOB_PAGE, errors=(400, 404))
    async def list_jobs(self, call):
        q = call.query
        filters = {}
        if "user" in q:
            filters["user_id"] = (await self._user(q["user"])).id
        if "printer" in q:
            filters["printer_id"] = (await self._printer(q["printer"])).id
        if "account" in q:
            filters["account_id"] = (await self._account(q["account"])).id
        for key in ("status", "since", "until", "problem"):
            if key in q:
                filters[key] = q[key]
        jobs, total = await self.store.list_jobs(offset=q["offset"], limit=q["limit"], **filters)
        return S.page_json(jobs, total, q["offset"], q["limit"], S.job_json)

    @route("GET", "/jobs/<job>", summary="One job of the log", tag="jobs",
           params={"job": Uuid()}, response=S.JOB, errors=(400, 404))
    async def get_job(self, call):
        return S.job_json(await self.store.get_job(call.params["job"]))

    @route("POST", "/jobs/import", summary="Charge an externally reported job", tag="jobs",
           headers=IDEMPOTENCY_KEY, body=JOB_IMPORT, response=S.IMPORT_RESULT, errors=(400, 404, 409),
           description="Runs the same validation and decision as a printed job (the job limits, "
                       "filters, account, balance) and, if it prints, charges it and writes the job "
                       "log in one transaction. A denied job is logged and not charged. Idempotent "
                       "with `uuid` or an `Idempotency-Key` header: a repeat returns what was "
                       "decided the first time.")
    async def import_job(self, call):
        b = call.body
        printer = await self._printer(b["printer"])
        account_id = None
        if b.get("account") is not None:
            account_id = (await self._account(b["account"])).id
        job_uuid = self._ledger_uuid(call)
        req = JobRequest(username=b["username"], printer_id=printer.id, pages=b["pages"],
                         colour_pages=b["colour_pages"], duplex=b["duplex"], copies=b["copies"],
                         paper_size=b["paper_size"], document_name=b["document_name"],
                         account_id=account_id, client=b["client"], uuid=job_uuid)
        decision, job = await self.jobs.submit(req, origin="app")
        if (job.username != req.username or job.printer_id != req.printer_id or job.pages != req.pages
                or job.colour_pages != req.colour_pages or job.copies != req.copies
                or job.duplex != req.duplex or job.document_name != req.document_name):
            raise Conflict(f"uuid: job {job_uuid} was already recorded with different details",
                           code="idempotency_conflict")
        account = None
        if decision.account_id is not None:
            account = await self.store.get_account(decision.account_id)
        return {
            "decision": S.decision_json(decision), "cost": S.money(decision.cost),
            "charged": JobStatus(job.status) is JobStatus.PRINTED and decision.cost > 0,
            "job": S.job_json(job),
            "account": S.account_json(account) if account is not None else None,
            "balance": S.money(account.balance) if account is not None else None,
        }

    # --- journal entries quarantined by Print Providers (docs/provider.md) ---------------------

    @route("GET", "/journal-quarantine", summary="Journal entries Print Providers set aside",
           tag="journal quarantine", query=QUARANTINE_FILTERS, response=S.QUARANTINE_PAGE,
           errors=(400,),
           description="Reports a print server's journal could not deliver: the server refused "
                       "them (or failed on them) for a reason other than being unavailable. The "
                       "print server keeps each entry, never drops it, and replays the rest of its "
                       "journal behind it. Newest report first.")
    async def list_quarantined(self, call):
        q = call.query
        entries, total = await self.store.list_quarantined(
            q["offset"], q["limit"], node=q.get("node"),
            state=q["state"].value if "state" in q else None)
        return S.page_json(entries, total, q["offset"], q["limit"], S.quarantined_json)

    @route("GET", "/journal-quarantine/<entry>", summary="One quarantined journal entry",
           tag="journal quarantine", params={"entry": Id()}, response=S.QUARANTINED_ENTRY,
           errors=(400, 404))
    async def get_quarantined(self, call):
        return S.quarantined_json(await self.store.get_quarantined(call.params["entry"]))

    @route("POST", "/journal-quarantine/<entry>/retry", summary="Send a quarantined entry again",
           tag="journal quarantine", params={"entry": Id()}, response=S.QUARANTINED_ENTRY,
           errors=(400, 404, 409, 503),
           description="The print server moves the entry back into its journal and replays it at "
                       "once (fix what it was refused for first: e.g. create the user, or register "
                       "the printer). The entry is then `retrying`; it becomes `resolved` when the "
                       "server acknowledges it, or `quarantined` again with the new error. 503 when "
                       "the print server is not connected; 409 when it was replayed already.")
    async def retry_quarantined(self, call):
        entry = await self._provider_ops().retry_quarantined(call.params["entry"])
        return S.quarantined_json(entry)

    # --- API tokens ----------------------------------------------------------------------------

    @route("GET", "/tokens", summary="List API tokens", tag="tokens", query=PAGING,
           response=S.TOKEN_PAGE)
    async def list_tokens(self, call):
        tokens = sorted(await self.store.list_api_tokens(), key=lambda t: t.id)
        return _page(tokens, call.query["offset"], call.query["limit"], S.token_json)

    @route("POST", "/tokens", summary="Create an API token", tag="tokens", body=TOKEN_CREATE,
           status=201, response=S.NEW_TOKEN, errors=(400, 404),
           description="The token is in the reply only; pcnet keeps just its hash.")
    async def create_token(self, call):
        user_id = None
        if call.body.get("user") is not None:
            user = await self._user(call.body["user"])
            if user.disabled or not user.admin:
                raise InvalidField("user", f"{user.username} is disabled or not an administrator")
            user_id = user.id
        token = new_token()
        record = await self.store.create_api_token(call.body["name"], hash_token(token), user_id=user_id)
        return {"token": token, "api_token": S.token_json(record)}

    @route("DELETE", "/tokens/<token>", summary="Revoke an API token", tag="tokens",
           params={"token": Id()}, status=204, errors=(400, 404))
    async def revoke_token(self, call):
        token_id = call.params["token"]
        if not any(t.id == token_id for t in await self.store.list_api_tokens()):
            raise NotFound(f"no API token with id {token_id}")
        await self.store.revoke_api_token(token_id)

    # --- nodes ---------------------------------------------------------------------------------

    @route("GET", "/nodes", summary="Print Providers, Site Servers and device gateways", tag="nodes",
           query={**PAGING, "status": Choice(NodeStatus, description="e.g. pending: waiting for approval")},
           response=S.NODE_PAGE)
    async def list_nodes(self, call):
        nodes = await self.store.list_nodes()
        if "status" in call.query:
            nodes = [n for n in nodes if str(n.status) == call.query["status"].value]
        return _page(nodes, call.query["offset"], call.query["limit"], S.node_json)

    @route("GET", "/nodes/<node>", summary="One node", tag="nodes", params={"node": NODE_NAME},
           response=S.NODE, errors=(400, 404))
    async def get_node(self, call):
        return S.node_json(await self.store.get_node(call.params["node"]))

    @route("POST", "/nodes/<node>/approve", summary="Let a pending (or rejected) node in", tag="nodes",
           params={"node": NODE_NAME}, response=S.NODE, errors=(400, 404),
           description="The node's next hello is accepted with the credential it enrolled with.")
    async def approve_node(self, call):
        return S.node_json(await self.nodes.set_status(call.params["node"], NodeStatus.APPROVED))

    @route("POST", "/nodes/<node>/reject", summary="Turn a node away", tag="nodes",
           params={"node": NODE_NAME}, response=S.NODE, errors=(400, 404),
           description="Its connection, if any, is closed, and its hellos are refused until it "
                       "is approved again (or re-enrolled with a new invitation).")
    async def reject_node(self, call):
        return S.node_json(await self.nodes.set_status(call.params["node"], NodeStatus.REJECTED))

    @route("DELETE", "/nodes/<node>", summary="Forget a node and free its name", tag="nodes",
           params={"node": NODE_NAME}, status=204, errors=(400, 404),
           description="Its connection, if any, is closed and its credential forgotten. Its "
                       "printers and job history stay. To let a node (the same or a new machine) "
                       "use the name again, invite it (`POST /node-invitations`).")
    async def delete_node(self, call):
        await self.nodes.delete(call.params["node"])

    @route("GET", "/node-invitations", summary="Outstanding node invitations", tag="nodes",
           query=PAGING, response=S.NODE_INVITATION_PAGE,
           description="Invitations whose code has not been used, the expired ones included "
                       "(`expired`); never the codes.")
    async def list_node_invitations(self, call):
        now = self.now()
        return _page(await self.store.list_node_invitations(), call.query["offset"],
                     call.query["limit"], lambda i: S.node_invitation_json(i, now))

    @route("POST", "/node-invitations", summary="Invite a node: a one-time enrolment code",
           tag="nodes", body=NODE_INVITE, status=201, response=S.NEW_NODE_INVITATION,
           errors=(400, 409),
           description="The code is in the reply only (pcnet keeps its hash). Put it in the node's "
                       "configuration (a Print Provider's `[server] enrolment_code`): its first "
                       "hello with the code enrols it under this name with the credential it "
                       "presents, and the code is spent. A new invitation for the same name "
                       "replaces the old one. Inviting the name of an existing node of the same "
                       "role re-enrols it (a new machine or credential): its old credential stops "
                       "working once the code is used. 409 if the name is a node of another role.")
    async def invite_node(self, call):
        b = call.body
        code, invitation = await self.nodes.invite(b["name"], b["role"].value,
                                                   hours=b["expires_hours"], approve=b.get("approve"))
        return {"code": code, "invitation": S.node_invitation_json(invitation, self.now())}

    @route("DELETE", "/node-invitations/<node>", summary="Withdraw a node invitation", tag="nodes",
           params={"node": NODE_NAME}, status=204, errors=(400, 404))
    async def withdraw_node_invitation(self, call):
        await self.store.delete_node_invitation(call.params["node"])

    # --- held jobs (Print Providers: hold/release and Find-Me; docs/provider.md) ---------------

    def _provider_ops(self):
        ops = self.provider_ops
        if ops is None:
            raise NoProviderSupport("this server was started without Print Provider support")
        return ops

    @route("GET", "/held-jobs", summary="Jobs held for release, newest first", tag="held jobs",
           query={**PAGING, "user": USER_REF, "printer": PRINTER_REF}, response=S.JOB_PAGE,
           errors=(400, 404),
           description="Jobs on printers with a hold or Find-Me hold mode that wait for their owner "
                       "or an administrator. They are not charged until they print.")
    async def list_held_jobs(self, call):
        q = call.query
        filters = {}
        if "user" in q:
            filters["user_id"] = (await self._user(q["user"])).id
        if "printer" in q:
            filters["printer_id"] = (await self._printer(q["printer"])).id
        jobs, total = await self.store.list_jobs(offset=q["offset"], limit=q["limit"],
                                                 status=JobStatus.HELD, **filters)
        return S.page_json(jobs, total, q["offset"], q["limit"], S.job_json)

    @route("POST", "/held-jobs/<job>/release", summary="Release a held job", tag="held jobs",
           params={"job": Uuid()}, body=HELD_RELEASE, response=S.JOB, errors=(400, 404, 409, 503),
           description="The print server holding the job releases it and it prints; it is charged "
                       "when the print server reports it printed. A Find-Me job is released at a "
                       "chosen `printer` (same print server, same page description language) and "
                       "charged with that printer's cost model. 409 when the job is not held or the "
                       "account cannot pay; 503 when its print server is not connected.")
    async def release_held_job(self, call):
        uuid = call.params["job"]
        printer_id = None
        if (call.body or {}).get("printer") is not None:
            printer_id = (await self._printer(call.body["printer"])).id
        by = getattr(call.token, "name", "") or ""
        await self._provider_ops().release(uuid, printer_id=printer_id, by=by)
        return S.job_json(await self.store.get_job(uuid))

    @route("POST", "/held-jobs/<job>/cancel", summary="Cancel a held job", tag="held jobs",
           params={"job": Uuid()}, body=HELD_CANCEL, response=S.JOB, errors=(400, 404, 409),
           description="The job is never printed nor charged; its print server deletes it (at once, "
                       "or when it reconnects).")
    async def cancel_held_job(self, call):
        uuid = call.params["job"]
        reason = (call.body or {}).get("reason") or "cancelled by an administrator"
        await self._provider_ops().cancel(uuid, reason=reason)
        return S.job_json(await self.store.get_job(uuid))

    # --- the signed-in user: their record, balance and own held jobs (HTTP Basic) --------------

    @route("GET", "/me", summary="Who you are and your balance", tag="me", scheme="basic",
           response=S.ME, errors=(),
           description="Your user record (never password or PIN hashes) and the balance of your "
                       "personal account. Sign in with your username and password (HTTP Basic).")
    async def me(self, call):
        account = None
        if call.user.personal_account_id is not None:
            account = await self.store.get_account(call.user.personal_account_id)
        return S.me_json(call.user, account)

    async def _my_job(self, call):
        """The caller's job named in the path; another user's job is 'does not exist' too."""
        uuid = call.params["job"]
        try:
            job = await self.store.get_job(uuid)
        except NotFound:
            job = None
        if job is None or job.user_id is None or job.user_id != call.user.id:
            raise NotFound(f"job {uuid} does not exist")
        return job

    @route("GET", "/me/held-jobs", summary="Your jobs held for release, newest first", tag="me",
           scheme="basic", query={**PAGING, "printer": PRINTER_REF}, response=S.JOB_PAGE,
           errors=(400, 404),
           description="Only your own jobs, on printers with a hold or Find-Me hold mode; `printer` "
                       "narrows the list to the queue they are held on.")
    async def my_held_jobs(self, call):
        q = call.query
        filters = {"user_id": call.user.id}
        if "printer" in q:
            filters["printer_id"] = (await self._printer(q["printer"])).id
        jobs, total = await self.store.list_jobs(offset=q["offset"], limit=q["limit"],
                                                 status=JobStatus.HELD, **filters)
        return S.page_json(jobs, total, q["offset"], q["limit"], S.job_json)

    @route("POST", "/me/held-jobs/<job>/release", summary="Release one of your held jobs", tag="me",
           scheme="basic", params={"job": Uuid()}, body=HELD_RELEASE, response=S.JOB,
           errors=(400, 404, 409, 503),
           description="As `POST /held-jobs/{job}/release`, for your own jobs only (another user's "
                       "job is 404). The job log records that you released it.")
    async def release_my_held_job(self, call):
        job = await self._my_job(call)
        printer_id = None
        if (call.body or {}).get("printer") is not None:
            printer_id = (await self._printer(call.body["printer"])).id
        await self._provider_ops().release(job.uuid, printer_id=printer_id, by=call.user.username)
        return S.job_json(await self.store.get_job(job.uuid))

    @route("POST", "/me/held-jobs/<job>/cancel", summary="Cancel one of your held jobs", tag="me",
           scheme="basic", params={"job": Uuid()}, body=MY_CANCEL, response=S.JOB,
           errors=(400, 404, 409),
           description="As `POST /held-jobs/{job}/cancel`, for your own jobs only (another user's "
                       "job is 404). The job log records `cancelled by <you>` and your `reason`.")
    async def cancel_my_held_job(self, call):
        job = await self._my_job(call)
        reason = f"cancelled by {call.user.username}"
        if (call.body or {}).get("reason"):
            reason += f": {call.body['reason']}"
        await self._provider_ops().cancel(job.uuid, reason=reason)
        return S.job_json(await self.store.get_job(job.uuid))


class _Utf8Guard(Resource):
    """Klein answers a URL that is not UTF-8 with a plain-text 400 of its own; answer it in
    the API's error shape instead."""

    isLeaf = True

    def __init__(self, klein_resource):
        super().__init__()
        self._klein = klein_resource

    def render(self, request):
        try:
            for segment in (*request.prepath, *request.postpath):
                segment.decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            return json_bytes({"error": {"code": "invalid", "message": "the URL is not UTF-8"}})
        return self._klein.render(request)


def _path(request) -> str:
    return request.path.decode("utf-8", "replace")[:300]


def _cost_model(base: CostModel, changes: dict) -> CostModel:
    changes = dict(changes)
    if "sizes" in changes:
        sizes, seen = {}, {}
        for name, prices in changes["sizes"].items():
            if name.lower() in seen:
                raise InvalidField(f"cost_model.sizes.{name}", f"the same size as {seen[name.lower()]!r}")
            seen[name.lower()] = name
            sizes[name] = (prices["grey"], prices["colour"])
        changes["sizes"] = sizes
    return replace(base, **changes)


def _filters(base: Filters, changes: dict) -> Filters:
    return replace(base, **changes)
