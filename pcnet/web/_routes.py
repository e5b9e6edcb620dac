"""Declared routes: a Klein route plus the specs of its parameters, body and reply.

`RouteTable` is used inside a Klein app class instead of `app.route`: each declaration
registers the Klein route and keeps a `Route` record, from which the request pipeline parses
input and the OpenAPI document is generated. A handler is `async def handler(self, call)` and
gets a `Call` whose `params`, `query`, `body` and `headers` are already validated; it returns a
JSON-able value (sent with the route's status), a `Reply`, or None (204 No Content).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred

from pcnet.errors import PcnetError
from pcnet.web._fields import Field, InvalidField, Object, parse_json, parse_query

#: Largest request body accepted, in bytes.
MAX_BODY = 1024 * 1024


class PayloadTooLarge(PcnetError):
    code = "too_large"
    http_status = 413


class UnsupportedMediaType(PcnetError):
    code = "unsupported_media_type"
    http_status = 415


@dataclass
class Route:
    """One declared route: what it takes and what it answers."""

    method: str
    path: str                      # werkzeug rule, relative to the API's mount point
    endpoint: str
    summary: str
    tag: str
    description: str = ""
    params: dict[str, Field] = field(default_factory=dict)
    query: dict[str, Field] = field(default_factory=dict)
    headers: dict[str, Field] = field(default_factory=dict)
    body: Object | None = None
    status: int = 200
    response: dict | None = None   # JSON Schema of a success reply; None for 204
    auth: bool = True
    # "bearer": an API token (the admin routes); "basic": a user's username and password
    # (the /me routes, acting for that user only).
    scheme: str = "bearer"
    errors: tuple[int, ...] = (400,)

    @property
    def openapi_path(self) -> str:
        out, rest = "", self.path
        while "<" in rest:
            before, _, tail = rest.partition("<")
            name, _, rest = tail.partition(">")
            out += before + "{" + name.split(":")[-1] + "}"
        return out + rest


@dataclass
class Call:
    """A request after validation."""

    request: Any
    params: dict
    query: dict
    headers: dict
    body: dict | None
    #: Who makes the request (`pcnet.app.services.Actor`): an API token on a "bearer" route,
    #: the signed-in user on a "basic" route; None on a route without authentication.
    actor: Any = None
    user: Any = None    # the signed-in user (`pcnet.domain.model.User`), on a "basic" route


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: dict = field(default_factory=dict)


class RouteTable:
    """`routes = RouteTable(app)` in a Klein app class; `@routes("GET", "/users", ...)`.

    The class using it provides `_authenticate(request, scheme)` (a coroutine returning the
    caller: an `Actor` for `"bearer"`, `(Actor, User)` for `"basic"`; or raising
    `Unauthorized`).
    """

    def __init__(self, app):
        self.app = app
        self.routes: list[Route] = []

    def __call__(self, method: str, path: str, *, summary: str, tag: str, **kw) -> Callable:
        def declare(handler):
            spec = Route(method=method, path=path, endpoint=handler.__name__, summary=summary,
                         tag=tag, description=kw.pop("description", handler.__doc__ or ""), **kw)
            if spec.scheme not in ("bearer", "basic"):
                raise TypeError(f"{path}: unknown authentication scheme {spec.scheme!r}")
            for name in _path_names(path):
                if name not in spec.params:
                    raise TypeError(f"{path}: path parameter {name} has no spec")

            @functools.wraps(handler)
            def klein_handler(api, request, **path_values):
                return Deferred.fromCoroutine(_serve(api, spec, handler, request, path_values))

            self.app.route(path, methods=[method], endpoint=spec.endpoint,
                           strict_slashes=False)(klein_handler)
            self.routes.append(spec)
            return klein_handler

        return declare


def _path_names(path: str) -> list[str]:
    names = []
    for part in path.split("<")[1:]:
        names.append(part.split(">")[0].split(":")[-1])
    return names


async def _serve(api, spec: Route, handler, request, path_values: dict):
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    caller = await api._authenticate(request, spec.scheme) if spec.auth else None
    params = {name: spec.params[name].from_text(value, name) for name, value in path_values.items()}
    # From the URI only: twisted.web also puts form-encoded body fields into request.args.
    _, _, query_string = request.uri.partition(b"?")
    query = parse_query(query_args(query_string), spec.query)
    headers = {}
    for name, hspec in spec.headers.items():
        raw = request.getHeader(name.encode("ascii"))   # bytes: a str key would decode UTF-8
        if raw is not None:
            headers[name] = hspec.from_text(raw.decode("latin-1"), name)
        elif hspec.required:
            raise InvalidField(name, "header required")
    body = read_body(request, spec.body, getattr(api, "max_body", MAX_BODY))
    actor, user = caller if spec.scheme == "basic" and caller is not None else (caller, None)
    result = await handler(api, Call(request, params, query, headers, body, actor=actor, user=user))
    return render(request, result, spec.status)


def query_args(query_string: bytes) -> dict[bytes, list[bytes]]:
    """`a=1&b=x+y` -> {b"a": [b"1"], b"b": [b"x y"]}, on bytes (decoding is the specs' job)."""
    args: dict[bytes, list[bytes]] = {}
    for part in query_string.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        key = unquote_to_bytes(key.replace(b"+", b" "))
        args.setdefault(key, []).append(unquote_to_bytes(value.replace(b"+", b" ")))
    return args


def read_body(request, spec: Object | None, limit: int):
    length = request.getHeader(b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"body: larger than the limit of {limit} bytes")
    content = request.content
    data = b""
    if content is not None:
        content.seek(0)
        data = content.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"body: larger than the limit of {limit} bytes")
    if spec is None:
        if data.strip():
            raise InvalidField("body", "this route takes no request body")
        return None
    if data.strip():
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype and ctype != b"application/json" and not ctype.endswith(b"+json"):
            raise UnsupportedMediaType(
                f"Content-Type: send the body as application/json, not {ctype.decode('latin-1')[:60]}")
        value = parse_json(data)
    else:
        value = {}
    if not isinstance(value, dict):
        raise InvalidField("body", "expected a JSON object")
    return spec.parse(value, "")


def render(request, result, status: int) -> bytes:
    if isinstance(result, Reply):
        status = result.status
        for k, v in result.headers.items():
            request.setHeader(k, v)
        result = result.body
    if result is None:
        request.setResponseCode(204)
        request.responseHeaders.removeHeader(b"content-type")
        return b""
    request.setResponseCode(status)
    return json_bytes(result)


def json_bytes(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_reply(request, status: int, value) -> bytes:
    """Answer `request` with `value` as JSON and `status`; never cached (every answer of the
    server's resources is live)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json_bytes(value)


def error_reply(request, status: int, code: str, message: str) -> bytes:
    """pcnet's error body, `{"error": {"code": ..., "message": ...}}`, for every resource
    (the admin API, `/`, `/api`, health and metrics)."""
    return json_reply(request, status, {"error": {"code": code, "message": message}})


def request_path(request) -> str:
    """The request's path as text for an error message or a log line, bounded (never its
    query string, which may hold a secret)."""
    return request.path.decode("utf-8", "replace")[:300]
