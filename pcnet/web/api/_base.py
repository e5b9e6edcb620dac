"""The plumbing every route module of the admin API shares: the Klein app and its route table,
authentication (bearer tokens, HTTP Basic for `/me`), the error replies, references, and the
field specs several resources use.

The API is a thin adapter over the service layer (`pcnet.app.services`): a handler parses JSON
with the field specs (whose limits are the services' rules, `pcnet.domain.rules`), calls one
service method with the request's `Actor` (`call.actor`: the API token, or the signed-in user,
with the peer address) and serialises what it returns (`pcnet.web._schemas`).
"""

from __future__ import annotations

import base64
import binascii
import uuid as uuidlib
from datetime import datetime

from klein import Klein
from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

from pcnet.app.jobs import utcnow
from pcnet.app.services import Actor, TokenRefused
from pcnet.app.throttle import SignInThrottle, TooManyAttempts
from pcnet.domain import rules as R
from pcnet.errors import PcnetError, Unauthorized
from pcnet.net.limits import source_key
from pcnet.web import _schemas as S
from pcnet.web._fields import (
    InvalidField,
    Integer,
    Ref,
    RefValue,
    String,
)
from pcnet.web._openapi import openapi_document
from pcnet.web._routes import MAX_BODY, RouteTable, error_reply, json_reply, request_path

API_PREFIX = "/api/v1"
API_VERSION = "1.0.0"

# --- field specs shared by several routes --------------------------------------------------

PAGING = {
    "offset": Integer(minimum=0, maximum=10_000_000, default=0, description="records to skip"),
    "limit": Integer(minimum=1, maximum=1000, default=100, description="records per page (at most 1000)"),
}

USER_REF = Ref("user", description="a user id, or a username (`name:` before a username made only of digits)")
GROUP_REF = Ref("group", description="a group id or name (`name:` before a name made only of digits)")
ACCOUNT_REF = Ref("account", description="an account id, or a shared account's name (`name:` before a name made only of digits)")
PRINTER_REF = Ref("printer", description="a printer id or name (`name:` before a name made only of digits)")

IDEMPOTENCY_KEY = {
    "Idempotency-Key": String(min_length=1, max_length=255, pattern=r"[\x21-\x7e]+",
                              pattern_hint="must be 1 to 255 visible ASCII characters",
                              description="repeat a request with the same key to apply it only once"),
}


def ref(value):
    """A parsed reference as the services take it: an int id, or a str name."""
    return value.name if isinstance(value, RefValue) else value


def ledger_uuid(call) -> str:
    """The uuid of a ledger transaction (or an imported job) a request makes: the body's
    `uuid`, else one derived from the Idempotency-Key header, else a new one."""
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


def page(items: list, offset: int, limit: int, serialise) -> dict:
    """A page of a list the services return whole."""
    return S.page_json(items[offset:offset + limit], len(items), offset, limit, serialise)


# --- authentication ------------------------------------------------------------------------

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


def peer_address(request) -> str:
    """The client's address as the audit log records it."""
    return str(getattr(request.getClientAddress(), "host", "") or "")


class ApiBase:
    """What every route module's class builds on: `app` and `route` (the one Klein app and
    route table of the API), authentication, errors and the OpenAPI document."""

    app = Klein()
    # Paths are matched exactly as sent: no redirects for doubled or trailing slashes.
    app.url_map.merge_slashes = False
    route = RouteTable(app)
    log = Logger()

    def __init__(self, services, clock, *, max_body: int = MAX_BODY,
                 signin: SignInThrottle | None = None):
        self.services = services
        self.clock = clock
        self.max_body = max_body
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
                        "quotas, the job log, API tokens, nodes, the offline policy and the "
                        "audit log. Send `Authorization: Bearer <token>`; "
                        "the /me routes instead take a user's username and password (HTTP Basic) "
                        "and act for that user only. "
                        "Money is a string with up to 4 decimal places, times are ISO-8601 UTC. "
                        "Every error is `{\"error\": {\"code\", \"message\"}}`.")

    def now(self) -> datetime:
        return utcnow(self.clock)

    async def _authenticate(self, request, scheme: str = "bearer"):
        """The request's `Actor` (an API token's, or for "basic" the signed-in user's, with
        the user: `(actor, user)`)."""
        if scheme == "basic":
            return await self._authenticate_user(request)
        header = request.getHeader(b"authorization")
        if header is None:
            raise Unauthenticated("Authorization: send the header 'Authorization: Bearer <token>'")
        scheme, _, token = header.decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("Authorization: expected 'Bearer <token>'")
        try:
            return await self.services.tokens.authenticate(token, peer_address(request))
        except TokenRefused as e:
            raise Unauthenticated(e.message, invalid=True) from None

    async def _authenticate_user(self, request):
        """The enabled user whose username and password came with HTTP Basic (the /me routes),
        checked off the reactor thread through the sign-in throttle. Unknown user, no password,
        wrong password and disabled user all get the same 401."""
        header = request.getHeader(b"authorization")
        if header is None:
            raise Unauthenticated("Authorization: send your username and password with HTTP Basic "
                                  "authentication", challenge=BASIC_CHALLENGE)
        username, password = _basic_credentials(header.decode("latin-1"))
        attempt = self.signin.begin(source_key(request.getClientAddress()), username)
        try:
            user = await self.services.users.get(username)
        except PcnetError:
            user = None
        except BaseException:
            attempt.abandon()
            raise
        ok = await attempt.check(password, user.password_hash if user is not None else None,
                                 allowed=user is not None and not user.disabled)
        if not ok:
            raise Unauthenticated(_WRONG_LOGIN, challenge=BASIC_CHALLENGE)
        # Acting for this user only (an administrator's own jobs, too, and no one else's).
        return Actor.for_user(user, peer_address(request), as_admin=False), user

    @app.handle_errors(Exception)
    def _on_error(self, request, failure):
        error = failure.value
        if isinstance(error, PcnetError):
            status, body = error.http_status, error.to_json()
            if isinstance(error, Unauthenticated):
                request.setHeader(b"www-authenticate", error.challenge.encode())
            elif isinstance(error, TooManyAttempts):
                request.setHeader(b"retry-after", str(error.retry_after).encode())
        elif isinstance(error, RouteNotFound):
            status, body = 404, {"code": "not_found", "message": f"no such route: {request_path(request)}"}
        elif isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or ())
            request.setHeader(b"allow", ", ".join(allowed).encode())
            status, body = 405, {"code": "method_not_allowed",
                                 "message": f"{request.method.decode('latin-1')} is not allowed here; "
                                            f"use {', '.join(allowed)}"}
        elif isinstance(error, HTTPException) and error.code and 400 <= error.code < 500:
            status, body = error.code, {"code": "http_error", "message": error.description or error.name}
        else:
            ref_ = uuidlib.uuid4().hex[:12]
            # Only the method, path and failure: bodies and headers may hold secrets.
            self.log.failure("admin API: unexpected error {ref} in {method} {path}", failure,
                             ref=ref_, method=request.method.decode("latin-1"), path=request_path(request))
            status, body = 500, {"code": "internal",
                                 "message": f"internal error (reference {ref_}); see the server log"}
        return json_reply(request, status, {"error": body})

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
            return error_reply(request, 400, "invalid", "the URL is not UTF-8")
        return self._klein.render(request)


#: A name field (groups, shared accounts, printers, tokens).
def name_field(**kw) -> String:
    return String(rule=R.NAME, **kw)
