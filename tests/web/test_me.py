"""The /me routes: a user signs in with HTTP Basic (username and password) and sees, releases
and cancels their own held jobs, never anyone else's. Failed sign-ins are throttled per
(address, username) pair and per address (pcnet.app.throttle; tests/app/test_throttle.py
covers it in depth). The Print Provider holding the jobs is a fake session (tests/web/conftest.py)."""

from __future__ import annotations

import base64
import uuid as uuidlib

import pytest
from pytest_twisted import ensureDeferred
from twisted.logger import globalLogPublisher

from pcnet.net.line import Operations
from pcnet.app.throttle import SignInPolicy, SignInThrottle
from pcnet.app.services import Services
from pcnet.web.api import AdminApi

from ._support import ApiClient

COST = {"grey": "0.10", "colour": "0.50"}
PASSWORDS = {"ann": "ann's secret", "bob": "bob-pässword"}


@pytest.fixture
def user(api):
    """Requests without a bearer token: pass `auth=basic(...)` headers."""
    return ApiClient(api, None)


def basic(username: str, password: str | None = None) -> dict:
    password = PASSWORDS.get(username, "") if password is None else password
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def setup(client):
    for name, password in PASSWORDS.items():
        r = await client.post("/users", {"username": name, "password": password,
                                         "initial_balance": "10.00"})
        assert r.status == 201, r.json
    printers = {}
    for name, hold in (("secure", "hold"), ("findme", "find-me"), ("colour", "none"), ("pcl", "none")):
        r = await client.post("/printers", {
            "name": name, "server": "print01", "queue": name, "hold_mode": hold,
            "pdl": "pcl" if name == "pcl" else "postscript",
            "cost_model": {"grey": "0.20", "colour": "1.00"} if name == "colour" else COST})
        printers[name] = r.json
    return printers


async def hold(ops, session, queue, owner="ann", pages=4, colour=1):
    job_uuid = str(uuidlib.uuid4())
    submit = ops.register(Operations()).handlers()["job.submit"]
    reply = await submit(session, {"uuid": job_uuid, "queue": queue, "user": owner,
                                   "document_name": f"{owner}.pdf", "pages": pages,
                                   "colour_pages": colour, "copies": 1})
    assert reply["action"] == "hold"
    return job_uuid


# --- who am I ---------------------------------------------------------------------------------


@ensureDeferred
async def test_me_is_the_users_record_and_balance(client, user):
    await setup(client)
    r = await user.get("/me", headers=basic("ann"))
    assert r.status == 200, r.json
    assert r.json["user"]["username"] == "ann" and r.json["user"]["has_password"] is True
    assert r.json["balance"] == "10.0000"
    assert "password_hash" not in r.json["user"]
    await client.post(f"/accounts/{r.json['user']['personal_account_id']}/adjust", {"amount": "-2.5"})
    assert (await user.get("/me", headers=basic("ann"))).json["balance"] == "7.5000"
    # UTF-8 passwords (RFC 7617)
    assert (await user.get("/me", headers=basic("bob"))).json["user"]["username"] == "bob"


# --- the owner's own jobs ---------------------------------------------------------------------


@ensureDeferred
async def test_owner_lists_releases_and_cancels_own_jobs(client, user, ops, session):
    printers = await setup(client)
    first = await hold(ops, session, "secure")
    second = await hold(ops, session, "secure")
    bobs = await hold(ops, session, "secure", owner="bob")

    listed = (await user.get("/me/held-jobs", headers=basic("ann"))).json
    assert listed["total"] == 2 and {j["uuid"] for j in listed["items"]} == {first, second}
    assert all(j["username"] == "ann" and j["status"] == "held" for j in listed["items"])
    r = await user.get("/me/held-jobs", headers=basic("ann"), params={"printer": "colour"})
    assert r.json["total"] == 0
    r = await user.get("/me/held-jobs", headers=basic("ann"), params={"printer": "secure", "limit": "1"})
    assert r.json["total"] == 2 and len(r.json["items"]) == 1

    r = await user.post(f"/me/held-jobs/{first}/release", {}, headers=basic("ann"))
    assert r.status == 200, r.json
    assert r.json["status"] == "released" and r.json["reason"] == "released by ann"
    assert r.json["printer_id"] == printers["secure"]["id"]
    assert session.pushed == [("job.release", {"uuid": first})]
    # a body is optional
    r = await user.post(f"/me/held-jobs/{second}/cancel", headers=basic("ann"))
    assert r.status == 200 and r.json["status"] == "cancelled"
    assert r.json["reason"] == "cancelled by ann"
    assert session.pushed[-1] == ("job.cancel", {"uuid": second, "reason": "cancelled by ann"})
    r = await user.post(f"/me/held-jobs/{second}/cancel", {}, headers=basic("ann"))
    assert r.status == 409   # not held any more

    listed = (await user.get("/me/held-jobs", headers=basic("ann"))).json
    assert listed["total"] == 0
    third = await hold(ops, session, "secure")
    r = await user.post(f"/me/held-jobs/{third}/cancel", {"reason": "wrong file"}, headers=basic("ann"))
    assert r.json["reason"] == "cancelled by ann: wrong file"

    # printed and charged when the provider says so, like an administrator's release
    await ops.register(Operations()).handlers()["job.printed"](session, {"uuid": first})
    assert (await user.get("/me", headers=basic("ann"))).json["balance"] == "9.2000"
    assert (await client.get(f"/jobs/{bobs}")).json["status"] == "held"


@ensureDeferred
async def test_another_users_job_is_not_found(client, user, ops, session):
    await setup(client)
    anns = await hold(ops, session, "secure")
    bobs = await hold(ops, session, "secure", owner="bob")
    listed = (await user.get("/me/held-jobs", headers=basic("bob"))).json
    assert [j["uuid"] for j in listed["items"]] == [bobs]

    missing = str(uuidlib.uuid4())
    for action, body in (("release", {}), ("cancel", {"reason": "mine now"})):
        r = await user.post(f"/me/held-jobs/{anns}/{action}", body, headers=basic("bob"))
        gone = await user.post(f"/me/held-jobs/{missing}/{action}", body, headers=basic("bob"))
        assert r.status == gone.status == 404
        # the same answer as for a job that does not exist: nothing confirms the uuid
        assert r.error == {**gone.error, "message": gone.error["message"].replace(missing, anns)}
    r = await user.post(f"/me/held-jobs/{anns}/release", {"printer": "colour"}, headers=basic("bob"))
    assert r.status == 404
    assert session.pushed == []
    assert (await client.get(f"/jobs/{anns}")).json["status"] == "held"
    r = await user.post("/me/held-jobs/not-a-uuid/release", {}, headers=basic("bob"))
    assert r.status == 400


@ensureDeferred
async def test_find_me_release_at_a_chosen_printer(client, user, ops, session):
    printers = await setup(client)
    job = await hold(ops, session, "findme")
    r = await user.get("/me/held-jobs", headers=basic("ann"), params={"printer": "findme"})
    assert [j["uuid"] for j in r.json["items"]] == [job]
    r = await user.post(f"/me/held-jobs/{job}/release", {}, headers=basic("ann"))
    assert r.status == 400 and "Find-Me" in r.error["message"]
    r = await user.post(f"/me/held-jobs/{job}/release", {"printer": "pcl"}, headers=basic("ann"))
    assert r.status == 400 and "page description language" in r.error["message"]
    r = await user.post(f"/me/held-jobs/{job}/release", {"printer": "nowhere"}, headers=basic("ann"))
    assert r.status == 404
    r = await user.post(f"/me/held-jobs/{job}/release", {"printer": "colour"}, headers=basic("ann"))
    assert r.status == 200, r.json
    assert r.json["reason"] == "released at colour by ann"
    assert session.pushed == [("job.release", {"uuid": job, "target_queue": "colour",
                                               "target_printer_id": printers["colour"]["id"]})]


@ensureDeferred
async def test_release_needs_the_print_server_connected(store, clock, admin_token):
    """A server whose print servers are not connected cannot release: 503 provider_offline."""
    client = ApiClient(AdminApi(Services(store, clock), clock), admin_token)
    user = ApiClient(client.api, None)
    await client.post("/users", {"username": "ann", "password": PASSWORDS["ann"],
                                 "initial_balance": "1.00"})
    await client.post("/printers", {"name": "secure", "hold_mode": "hold", "server": "print01"})
    imported = await client.post("/jobs/import", {"username": "ann", "printer": "secure", "pages": 1})
    job = imported.json["job"]["uuid"]
    assert imported.json["job"]["status"] == "held"
    r = await user.post(f"/me/held-jobs/{job}/release", {}, headers=basic("ann"))
    assert r.status == 503 and r.error["code"] == "provider_offline"


@ensureDeferred
async def test_an_administrator_signed_in_on_me_acts_for_themself_only(client, user, ops, session):
    """/me acts for the signed-in user whoever it is: an administrator's own password does
    not reach another user's jobs there (that takes an API token)."""
    await setup(client)
    await client.post("/users", {"username": "boss", "password": "b0ss-pw!", "admin": True})
    anns = await hold(ops, session, "secure", owner="ann")
    r = await user.post(f"/me/held-jobs/{anns}/release", {}, headers=basic("boss", "b0ss-pw!"))
    assert r.status == 404 and session.pushed == []


# --- authentication ---------------------------------------------------------------------------


@ensureDeferred
async def test_who_is_refused(client, user, admin_token, ops, session):
    await setup(client)
    job = await hold(ops, session, "secure")
    await client.post("/users", {"username": "nopass"})
    await client.patch("/users/bob", {"disabled": True})
    # lock-outs are test_repeated_failures_lock_the_pair's
    user.api.signin = SignInThrottle(user.api.clock, SignInPolicy(user_failures=1000,
                                                                  hashes_per_second=10_000))
    wrong = "Authorization: wrong username or password, or the user is disabled"
    refused = [
        ({}, None),                                     # no credentials at all
        (basic("ann", "guess"), wrong),
        (basic("ann", ""), wrong),
        (basic("ANN"), wrong),                          # usernames are exact
        (basic("nobody", "guess"), wrong),              # unknown: the same answer
        (basic("nopass", ""), wrong),                   # a user without a password
        (basic("bob"), wrong),                          # disabled, right password
        ({"Authorization": f"Bearer {admin_token}"}, None),   # an API token is not a user
        ({"Authorization": "Basic !!!"}, None),
        ({"Authorization": "Basic " + base64.b64encode(b"no colon").decode()}, wrong),
        ({"Authorization": "Basic " + base64.b64encode(b"ann:\xff").decode()}, None),
        ({"Authorization": "Basic"}, None),
    ]
    for headers, message in refused:
        for method, path in (("GET", "/me"), ("GET", "/me/held-jobs"),
                             ("POST", f"/me/held-jobs/{job}/release")):
            r = await user.request(method, path, {} if method == "POST" else None, headers=headers)
            assert r.status == 401, (headers, path, r.json)
            assert r.header("www-authenticate") == 'Basic realm="pcnet"'
            assert r.error["code"] == "unauthorized"
            if message is not None:
                assert r.error["message"] == message
    assert session.pushed == []
    # and a user's password opens no admin route, even an administrator's
    await client.patch("/users/ann", {"admin": True})
    r = await user.get("/held-jobs", headers=basic("ann"))
    assert r.status == 401 and r.header("www-authenticate").startswith("Bearer")
    assert (await user.get("/me", headers=basic("ann"))).status == 200


@ensureDeferred
async def test_repeated_failures_lock_the_pair(client, user, clock):
    """Five failures as one user from one address lock that pair (429 with Retry-After), not
    the user everywhere: other users from the same address still sign in."""
    await setup(client)
    # a success in between clears the count
    for _ in range(4):
        assert (await user.get("/me", headers=basic("ann", "guess"))).status == 401
    assert (await user.get("/me", headers=basic("ann"))).status == 200
    for _ in range(4):
        assert (await user.get("/me", headers=basic("ann", "guess"))).status == 401
    assert (await user.get("/me", headers=basic("Ann", "guess"))).status == 401   # 5th for "ann"
    r = await user.get("/me", headers=basic("ann"))   # even the right password, while locked
    assert r.status == 429 and r.error["code"] == "too_many_attempts"
    assert r.header("retry-after") == "300"
    assert (await user.get("/me", headers=basic("bob"))).status == 200   # per pair
    clock.advance(299)
    r = await user.get("/me", headers=basic("ann"))
    assert r.status == 429 and r.header("retry-after") == "1"
    clock.advance(1)
    assert (await user.get("/me", headers=basic("ann"))).status == 200
    # unknown usernames are throttled alike, so answers do not tell them apart
    for _ in range(5):
        assert (await user.get("/me", headers=basic("nobody", "guess"))).status == 401
    assert (await user.get("/me", headers=basic("nobody", "guess"))).status == 429
    # failures further apart than the window do not add up
    for _ in range(4):
        assert (await user.get("/me", headers=basic("bob", "guess"))).status == 401
    clock.advance(900)
    for _ in range(4):
        assert (await user.get("/me", headers=basic("bob", "guess"))).status == 401
    assert (await user.get("/me", headers=basic("bob"))).status == 200


@ensureDeferred
async def test_no_password_reaches_the_log(client, user):
    await setup(client)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(6):
            await user.get("/me", headers=basic("ann", "hunter2-guess"))
        await user.get("/me", headers=basic("bob"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("refused" in str(e.get("log_format", "")) for e in events)
    text = repr(events)
    assert "hunter2" not in text and PASSWORDS["bob"] not in text


@ensureDeferred
async def test_the_api_shares_the_servers_throttle_and_counts_by_client_address(client, user):
    """The API uses the throttle it is given (the server's one, shared with every way in),
    keyed by the client's address (StubTreq's is 127.0.0.1)."""
    await setup(client)
    shared = SignInThrottle(user.api.clock, SignInPolicy(hashes_per_second=10_000))
    user.api.signin = shared
    for _ in range(5):
        assert (await user.get("/me", headers=basic("ann", "guess"))).status == 401
    r = await user.get("/me", headers=basic("ann"))
    assert r.status == 429 and r.header("retry-after") == "300"
    assert ("127.0.0.1", "ann") in shared._pairs and shared.hashes == 5


# --- administrators are unaffected; the document covers the routes ------------------------------


@ensureDeferred
async def test_admin_routes_still_use_bearer_tokens(client, user, ops, session):
    await setup(client)
    anns = await hold(ops, session, "secure")
    bobs = await hold(ops, session, "secure", owner="bob")
    assert (await client.get("/held-jobs")).json["total"] == 2
    r = await client.post(f"/held-jobs/{bobs}/release", {})
    assert r.status == 200 and r.json["reason"] == "released by tests"
    r = await client.post(f"/held-jobs/{anns}/cancel", {})
    assert r.status == 200 and r.json["reason"] == "cancelled by an administrator"
    r = await user.get("/held-jobs")
    assert r.status == 401 and r.header("www-authenticate") == 'Bearer realm="pcnet"'


def test_the_document_describes_basic_sign_in():
    doc = AdminApi.openapi()
    assert doc["components"]["securitySchemes"]["basic"]["scheme"] == "basic"
    me_paths = [p for p in doc["paths"] if p == "/me" or p.startswith("/me/")]
    assert sorted(me_paths) == ["/me", "/me/held-jobs", "/me/held-jobs/{job}/cancel",
                                "/me/held-jobs/{job}/release"]
    for path in me_paths:
        for op in doc["paths"][path].values():
            assert op["security"] == [{"basic": []}]
            assert {"401", "429"} <= set(op["responses"]) and "403" not in op["responses"]
    assert doc["paths"]["/held-jobs"]["get"].get("security") is None   # the default: bearer
