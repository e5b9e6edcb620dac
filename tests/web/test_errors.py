"""Authentication and the one error shape: every failure is `{"error": {"code", "message"}}`,
bad input of any kind is a 4xx naming the field, and only bugs are 500s."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_twisted import ensureDeferred
from twisted.logger import globalLogPublisher

from pcnet.domain.secrets import hash_token, new_token
from pcnet.app.services import Services
from pcnet.web.api import AdminApi

from ._support import ApiClient

# --- authentication ---------------------------------------------------------------------------


@ensureDeferred
async def test_missing_token_is_401_with_a_bearer_challenge(anonymous):
    r = await anonymous.get("/users")
    assert r.status == 401 and r.error["code"] == "unauthorized"
    assert r.header("www-authenticate") == 'Bearer realm="pcnet"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc",
                                    "Bearer not a token", "Bearer " + "x" * 600,
                                    "Bearer " + new_token()])
@ensureDeferred
async def test_bad_or_unknown_token_is_401(anonymous, header):
    r = await anonymous.get("/users", headers={"Authorization": header})
    assert r.status == 401 and r.error["code"] == "unauthorized"
    assert r.header("www-authenticate").startswith("Bearer")


@ensureDeferred
async def test_unknown_token_says_invalid_token(anonymous):
    r = await anonymous.get("/users", token=new_token())
    assert r.header("www-authenticate") == 'Bearer realm="pcnet", error="invalid_token"'


@ensureDeferred
async def test_scheme_is_case_insensitive(anonymous, admin_token):
    r = await anonymous.get("/users", headers={"Authorization": f"bearer {admin_token}"})
    assert r.status == 200


@ensureDeferred
async def test_token_of_a_disabled_or_demoted_user_is_refused(client, anonymous, store):
    user = await store.create_user("ops", admin=True)
    token = new_token()
    await store.create_api_token("ops", hash_token(token), user_id=user.id)
    assert (await anonymous.get("/users", token=token)).status == 200
    await client.patch("/users/ops", {"admin": False})
    r = await anonymous.get("/users", token=token)
    assert r.status == 403 and r.error["code"] == "forbidden"


@ensureDeferred
async def test_token_without_a_user_works(anonymous, store):
    token = new_token()
    await store.create_api_token("service", hash_token(token))
    assert (await anonymous.get("/groups", token=token)).status == 200


@ensureDeferred
async def test_auth_comes_before_input_checks(anonymous):
    r = await anonymous.post("/users", {"bogus": 1})
    assert r.status == 401


@ensureDeferred
async def test_openapi_and_index_need_no_token(anonymous):
    r = await anonymous.get("/openapi.json")
    assert r.status == 200 and r.json["openapi"].startswith("3.1")
    r = await anonymous.get("/")
    assert r.status == 200 and r.json["openapi"] == "/api/v1/openapi.json"


# --- routes and methods -------------------------------------------------------------------------


@ensureDeferred
async def test_unknown_route_is_404_in_the_error_shape(client):
    r = await client.get("/nothing/here")
    assert r.status == 404 and r.error == {"code": "not_found", "message": "no such route: /api/v1/nothing/here"}


@ensureDeferred
async def test_wrong_method_is_405_with_allow(client):
    r = await client.delete("/users")
    assert r.status == 405 and r.error["code"] == "method_not_allowed"
    assert set(r.header("allow").split(", ")) == {"GET", "HEAD", "POST"}


# --- bad input ----------------------------------------------------------------------------------


@ensureDeferred
async def test_malformed_json_is_400(client):
    for data in (b"{", b"[1, 2]", b'"text"', b"null", b'{"username": "a", "username": "b"}',
                 b'{"username": NaN}', b"\xff\xfe", b"{}" * 3):
        r = await client.post("/users", data=data, headers={"Content-Type": "application/json"})
        assert r.status == 400, (data, r.json)
        assert r.error["code"] == "invalid"


@ensureDeferred
async def test_wrong_types_and_missing_fields_name_the_field(client):
    cases = [({}, "username"), ({"username": 5}, "username"), ({"username": "a b"}, "username"),
             ({"username": ""}, "username"), ({"username": "a", "card_numbers": "123"}, "card_numbers"),
             ({"username": "a", "card_numbers": [1]}, "card_numbers[0]"),
             ({"username": "a", "restricted": "yes"}, "restricted"),
             ({"username": "a", "initial_balance": 1.5}, "initial_balance"),
             ({"username": "a", "email": "not an address"}, "email"),
             ({"username": "a", "pin": "12"}, "pin"),
             ({"username": "a\u0000"}, "username"),
             ({"username": "a", "nmae": "x"}, "nmae")]
    for body, field in cases:
        r = await client.post("/users", body)
        assert r.status == 400, (body, r.json)
        assert r.error["field"] == field, (body, r.json)
        assert r.error["message"].startswith(f"{field}:"), r.error


@ensureDeferred
async def test_secrets_are_not_echoed_in_errors(client):
    r = await client.post("/users", {"username": "a", "pin": "my secret pin"})
    assert r.status == 400 and b"my secret pin" not in r.raw


@ensureDeferred
async def test_bad_query_parameters_are_400(client):
    for params, field in [({"limit": "0"}, "limit"), ({"limit": "5000"}, "limit"), ({"limit": "x"}, "limit"),
                          ({"offset": "-1"}, "offset"), ({"lmit": "5"}, "lmit"),
                          ({"limit": ["1", "2"]}, "limit")]:
        r = await client.get("/users", params=params)
        assert r.status == 400, (params, r.json)
        assert r.error["field"] == field


@ensureDeferred
async def test_bad_path_parameters_are_400(client):
    for path, field in [("/quotas/0", "quota"), ("/quotas/99999999999999999999", "quota"),
                        ("/tokens/x", "token"), ("/jobs/not-a-job", "job"), ("/jobs/12x", "job")]:
        r = await client.get(path) if not path.startswith("/tokens") else await client.delete(path)
        assert r.status == 400, (path, r.json)
        assert r.error["field"] == field
    assert (await client.get("/users/99999999999999999999")).status == 400


@ensureDeferred
async def test_body_over_the_limit_is_413(services, clock, admin_token):
    small = ApiClient(AdminApi(services, clock, max_body=100), admin_token)
    r = await small.post("/users", {"username": "a", "full_name": "x" * 200})
    assert r.status == 413 and r.error["code"] == "too_large"


@ensureDeferred
async def test_non_json_body_is_415(client):
    r = await client.post("/users", data=b"username=ann",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415 and r.error["code"] == "unsupported_media_type"


@ensureDeferred
async def test_body_on_a_route_without_one_is_400(client):
    r = await client.request("GET", "/users", {"x": 1})
    assert r.status == 400 and r.error["field"] == "body"


@ensureDeferred
async def test_unexpected_error_is_500_in_the_error_shape_and_logged(store, clock, admin_token):
    class Broken:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def list_users(self, **kw):
            raise RuntimeError("database exploded")

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        broken = ApiClient(AdminApi(Services(Broken(store), clock), clock), admin_token)
        r = await broken.get("/users")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert r.status == 500 and r.error["code"] == "internal"
    assert "database exploded" not in r.error["message"]
    logged = [e for e in events if e.get("log_failure") is not None]
    assert logged and logged[0]["path"] == "/api/v1/users"
    assert admin_token not in repr(logged)


# --- "never a 500", fuzzed ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8)

FIELDS = ["username", "name", "amount", "balance", "pages", "colour_pages", "copies", "printer", "uuid",
          "cost_model", "filters", "sizes", "grey", "period", "group", "parent", "pin", "password",
          "card_numbers", "hold_mode", "user", "account", "comment", "duplex", "cap", "max_pages"]
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=5)

ROUTES = [("POST", "/users"), ("PATCH", "/users/root"), ("POST", "/groups"), ("POST", "/accounts"),
          ("PATCH", "/accounts/1"), ("POST", "/accounts/1/adjust"), ("POST", "/accounts/1/set-balance"),
          ("POST", "/printers"), ("POST", "/quotas"), ("POST", "/jobs/import"), ("POST", "/tokens")]


async def check_body_never_500(client, route, body):
    method, path = route
    r = await client.request(method, path, data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
    assert r.status < 500, (method, path, body, r.json)


async def check_path_never_500(client, segment):
    from urllib.parse import quote

    for path in (f"/users/{quote(segment)}", f"/printers/{quote(segment)}",
                 f"/accounts/{quote(segment)}/transactions", f"/groups/name:{quote(segment)}"):
        r = await client.get(path)
        assert r.status < 500, (path, r.json)


path_segments = st.text(min_size=1, max_size=20).filter(lambda s: not set(s) & set("/?#"))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), body=bodies | json_values)
@ensureDeferred
async def test_fuzzed_json_bodies_never_cause_a_500(client, route, body):
    await check_body_never_500(client, route, body)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=64))
@ensureDeferred
async def test_fuzzed_raw_bodies_never_cause_a_500(client, data):
    r = await client.request("POST", "/printers", data=data, headers={"Content-Type": "application/json"})
    assert r.status < 500, (data, r.json)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(segment=path_segments)
@ensureDeferred
async def test_fuzzed_path_references_never_cause_a_500(client, segment):
    await check_path_never_500(client, segment)


def body_routes():
    return [(r.method, r.path, r.body) for r in AdminApi.routes() if r.body is not None]


def concrete(path: str) -> str:
    """A routable path for a declared one: references point at the test administrator."""
    import re as _re

    return _re.sub(r"<([^>]+)>", lambda m: FUZZ_REFS.get(m.group(1), "1"), path)


#: What the generated requests' path references point at (made by `fuzz_world`).
FUZZ_REFS = {"user": "fuzz", "group": "staff", "account": "Shared", "printer": "lib", "node": "n1"}


async def fuzz_world(client):
    """Records for generated requests to work on; made once per test (not per example)."""
    if getattr(client, "fuzz_ready", False):
        return
    assert (await client.post("/users", {"username": "fuzz", "initial_balance": "100"})).status == 201
    assert (await client.post("/groups", {"name": "staff"})).status == 201
    assert (await client.post("/accounts", {"name": "Shared"})).status == 201
    assert (await client.post("/printers", {"name": "lib"})).status == 201
    assert (await client.post("/quotas", {"group": "staff", "amount": "1", "period": "daily"})).status == 201
    client.fuzz_ready = True


@st.composite
def spec_bodies(draw):
    method, path, spec = draw(st.sampled_from(body_routes()))
    from ._support import value_strategy

    return method, concrete(path), draw(value_strategy(spec))


async def check_spec_body_never_500(client, drawn):
    await fuzz_world(client)
    method, path, body = drawn
    r = await client.request(method, path, data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
    assert r.status < 500, (method, path, body, r.json)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn=spec_bodies())
@ensureDeferred
async def test_nearly_valid_bodies_for_every_route_never_cause_a_500(client, drawn):
    """Bodies built from each route's own field specs (mostly valid, some near misses) reach
    the store and the job service; whatever they do, the answer is never a 500."""
    await check_spec_body_never_500(client, drawn)


def query_routes():
    return [(r.path, list(r.query)) for r in AdminApi.routes() if r.method == "GET" and r.query]


@st.composite
def spec_queries(draw):
    path, names = draw(st.sampled_from(query_routes()))
    values = st.text(max_size=12) | st.integers(-5, 2 ** 64).map(str) | st.sampled_from(
        ["fuzz", "name:fuzz", "2025-03-01", "2025-03-01T00:00:00Z", "printed", "shared", "pending"])
    params = draw(st.dictionaries(st.sampled_from(names + ["bogus"]), values, max_size=4))
    return concrete(path), params


async def check_query_never_500(client, drawn):
    await fuzz_world(client)
    path, params = drawn
    r = await client.get(path, params=params)
    assert r.status < 500, (path, params, r.json)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn=spec_queries())
@ensureDeferred
async def test_fuzzed_query_parameters_never_cause_a_500(client, drawn):
    await check_query_never_500(client, drawn)


@ensureDeferred
async def test_non_utf8_urls_are_400_in_the_error_shape(client):
    r = await client.get("/users/%ff", check=False)
    assert r.status == 400 and r.error["code"] == "invalid"
    r = await client.get("/users?search=%ff")
    assert r.status == 400 and r.error["field"] == "search"
    r = await client.get("/users?%ff=1")
    assert r.status == 400


@ensureDeferred
async def test_public_routes_refuse_unknown_parameters_too(anonymous):
    r = await anonymous.get("/openapi.json", params={"format": "yaml"})
    assert r.status == 400 and r.error["field"] == "format"
