"""Test support for the admin API: an in-memory HTTP client and a small JSON Schema checker.

`ApiClient` sends requests through `treq.testing.StubTreq` (no sockets) to an `AdminApi`
mounted at /api/v1 and, by default, checks every reply against the OpenAPI document: the
status must be one the route documents, a success body must match the route's response
schema and an error body the `Error` schema. So every test that calls the API also checks
that the document tells the truth.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException

from pcnet.web.api import API_PREFIX, AdminApi


@dataclass
class Reply:
    status: int
    headers: object
    raw: bytes

    @property
    def json(self):
        return json.loads(self.raw) if self.raw else None

    @property
    def error(self) -> dict:
        return self.json["error"]

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class ApiClient:
    def __init__(self, api: AdminApi, token: str | None = None):
        root = Resource()
        api.mount(root)
        self.api = api
        self.stub = StubTreq(root)
        self.token = token
        self.document = AdminApi.openapi()
        self._adapter = AdminApi.app.url_map.bind("pcnet.test")

    async def _pump(self, d):
        # The resource answers asynchronously (the store works in threads): move bytes between
        # the in-memory client and server until the reply is complete.
        outcome = []
        d.addBoth(outcome.append)
        while not outcome:
            self.stub.flush()
            if outcome:
                break
            await deferLater(reactor, 0.001, lambda: None)
        result = outcome[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    async def request(self, method: str, path: str, json_body=None, *, data: bytes | None = None,
                      headers: dict | None = None, token: str | None = "default", params=None,
                      check: bool = True) -> Reply:
        hdrs = dict(headers or {})
        token = self.token if token == "default" else token
        if token is not None:
            hdrs.setdefault("Authorization", f"Bearer {token}")
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = "http://pcnet.test" + API_PREFIX + path
        kw = {}
        if data is not None:
            kw["data"] = data
        if params is not None:
            kw["params"] = params
        response = await self._pump(self.stub.request(
            method, url, headers={k: [v] for k, v in hdrs.items()}, **kw))
        raw = await self._pump(self.stub.content(response))
        reply = Reply(response.code, response.headers, raw)
        if check:
            self.check_documented(method, path, reply)
            if json_body is not None and 200 <= reply.status < 300:
                self.check_request_documented(method, path, json_body)
        return reply

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # --- the document tells the truth ----------------------------------------------------------

    def check_documented(self, method: str, path: str, reply: Reply) -> None:
        if reply.status == 204:
            assert reply.raw == b"", reply.raw
        else:
            assert reply.header("content-type").startswith("application/json"), reply.headers
        body = reply.json
        if reply.status >= 400:
            check_schema(body, {"$ref": "#/components/schemas/Error"}, self.document)
        try:
            route = self.route_for(method, path)
        except HTTPException:
            assert reply.status in (404, 405), reply.status   # no such route, or method
            return
        if reply.status >= 400:
            op = self.document["paths"][route.openapi_path][method.lower()]
            assert str(reply.status) in op["responses"], \
                f"{method} {path} answered {reply.status}, not documented"
            return
        op = self.document["paths"][route.openapi_path][method.lower()]
        documented = op["responses"].get(str(reply.status))
        assert documented is not None, f"{method} {path} answered {reply.status}, not documented"
        content = documented.get("content")
        if content is None:
            assert reply.raw == b""
        else:
            check_schema(body, content["application/json"]["schema"], self.document)

    def check_request_documented(self, method: str, path: str, body) -> None:
        """A body the API accepted must also be valid by the documented request schema."""
        route = self.route_for(method, path)
        op = self.document["paths"][route.openapi_path][method.lower()]
        check_schema(body, op["requestBody"]["content"]["application/json"]["schema"], self.document)

    def route_for(self, method: str, path: str):
        from urllib.parse import unquote

        endpoint, _ = self._adapter.match(unquote(path.split("?")[0]), method=method)
        return next(r for r in AdminApi.routes() if r.endpoint == endpoint)


# --- a JSON Schema checker for the subset the document uses -----------------------------------

class SchemaMismatch(AssertionError):
    pass


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(schema: dict, document: dict) -> dict:
    while "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def check_schema(value, schema: dict, document: dict, path: str = "$") -> None:
    """Raise SchemaMismatch naming the first place where `value` breaks `schema`."""
    schema = _resolve(schema, document)

    def fail(msg):
        raise SchemaMismatch(f"{path}: {msg} (value {value!r:.200})")

    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            fail(f"expected type {types}")
    if "enum" in schema and value not in schema["enum"]:
        fail(f"not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        fail(f"not {schema['const']!r}")
    for key in ("oneOf", "anyOf"):
        if key in schema:
            matches = 0
            for option in schema[key]:
                try:
                    check_schema(value, option, document, path)
                    matches += 1
                except SchemaMismatch:
                    pass
            if matches == 0 or (key == "oneOf" and matches > 1):
                fail(f"matches {matches} of the {key} options")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            fail(f"does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            fail("too long")
        if "minLength" in schema and len(value) < schema["minLength"]:
            fail("too short")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            fail("below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            fail("above maximum")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            fail("too many items")
        for i, item in enumerate(value):
            if "items" in schema:
                check_schema(item, schema["items"], document, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                fail(f"missing required property {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                check_schema(item, props[name], document, f"{path}.{name}")
            elif extra is False:
                fail(f"undocumented property {name!r}")
            elif isinstance(extra, dict):
                check_schema(item, extra, document, f"{path}.{name}")


# --- request bodies generated from the field specs, for fuzzing ------------------------------

def value_strategy(spec):
    """Hypothesis values that are mostly valid for `spec`, with near misses mixed in (one in
    ten), so that generated requests get past validation and into the store."""
    from datetime import timezone

    from hypothesis import strategies as st

    from pcnet.web import _fields as F

    near_miss = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5) | st.integers()

    def mostly(valid):
        return st.integers(0, 9).flatmap(lambda n: near_miss if n == 0 else valid)

    if isinstance(spec, F.Object):
        required = {k: value_strategy(f) for k, f in spec.fields.items() if f.required}
        optional = {k: value_strategy(f) for k, f in spec.fields.items() if not f.required}
        return mostly(st.fixed_dictionaries(required, optional=optional))
    if isinstance(spec, F.ListOf):
        return mostly(st.lists(value_strategy(spec.item), max_size=4))
    if isinstance(spec, F.MapOf):
        return mostly(st.dictionaries(st.sampled_from(["A3", "A4", "Letter", "a4", "x y"]),
                                      value_strategy(spec.value), max_size=3))
    if isinstance(spec, F.Money):
        amounts = st.decimals(min_value=-10 ** 10, max_value=10 ** 10, places=4, allow_nan=False)
        return mostly(amounts.map(str) | st.integers(-10 ** 12, 10 ** 12) | st.sampled_from(["0", "1.5", "-2"]))
    if isinstance(spec, F.Choice):
        return mostly(st.sampled_from([m.value for m in spec.enum_type]))
    if isinstance(spec, F.Ref):
        return mostly(st.integers(1, 5) | st.sampled_from(["fuzz", "staff", "lib", "Shared", "root"])
                      | st.integers(-2, 2 ** 64) | st.text(max_size=12))
    if isinstance(spec, F.Uuid):
        return mostly(st.uuids().map(str))
    if isinstance(spec, F.Timestamp):
        return mostly(st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat()))
    if isinstance(spec, F.Boolean):
        return mostly(st.booleans())
    if isinstance(spec, F.Integer):
        return mostly(st.integers(spec.minimum, min(spec.maximum, 2 ** 40)) | st.integers(spec.minimum - 2, spec.minimum + 100))
    if isinstance(spec, F.Secret):
        return mostly(st.text(alphabet="0123456789abc", min_size=4, max_size=8) | st.text(max_size=10))
    if isinstance(spec, F.String):
        return mostly(st.text(max_size=min(spec.max_length + 2, 40)) | st.text(alphabet="abcXYZ-_.", min_size=1, max_size=12))
    return near_miss
