"""The audit log through the API (paged, filtered, read only: every method but GET is 405) and
the Site Servers' offline policy (GET and PATCH), with the replies the document describes."""

from __future__ import annotations

from pytest_twisted import ensureDeferred


@ensureDeferred
async def test_the_apis_changes_are_in_the_audit_log_with_who_and_from_where(client):
    await client.post("/users", {"username": "ann", "password": "secret-1"})
    await client.post("/printers", {"name": "lib", "cost_model": {"grey": "0.10"}})
    await client.patch("/printers/lib", {"cost_model": {"grey": "0.20"}})
    r = await client.get("/audit-log")
    assert r.status == 200 and r.json["total"] == 3
    newest = r.json["items"][0]
    assert (newest["action"], newest["object_kind"], newest["object_name"]) == (
        "printer.update", "printer", "lib")
    assert newest["actor"] == "token:1" and newest["actor_name"] == "tests"
    assert newest["address"] == "127.0.0.1"
    assert newest["before"]["cost_model"]["grey"] == "0.1000"
    assert newest["after"]["cost_model"]["grey"] == "0.2000"
    created = r.json["items"][-1]
    assert created["action"] == "user.create" and created["after"]["password"] == "set"
    assert "secret-1" not in r.raw.decode() and "scrypt" not in r.raw.decode()


@ensureDeferred
async def test_the_audit_log_pages_and_filters_by_actor_object_and_time(client):
    for name in ("a", "b", "c"):
        await client.post("/groups", {"name": name})
    page = await client.get("/audit-log", params={"limit": "2", "offset": "1"})
    assert page.json["total"] == 3 and [e["object_name"] for e in page.json["items"]] == ["b", "a"]
    by_actor = await client.get("/audit-log", params={"actor": "token:1"})
    assert by_actor.json["total"] == 3
    assert (await client.get("/audit-log", params={"actor": "token:2"})).json["total"] == 0
    assert (await client.get("/audit-log", params={"actor_kind": "token"})).json["total"] == 3
    assert (await client.get("/audit-log", params={"actor_kind": "cli"})).json["total"] == 0
    group_b = page.json["items"][0]["object_id"]
    one = await client.get("/audit-log", params={"object_kind": "group", "object_id": group_b})
    assert [e["object_name"] for e in one.json["items"]] == ["b"]
    assert (await client.get("/audit-log", params={"action": "group.create"})).json["total"] == 3
    assert (await client.get("/audit-log", params={"since": "2025-03-12T10:00:00Z"})).json["total"] == 3
    assert (await client.get("/audit-log", params={"until": "2025-03-12T10:00:00Z"})).json["total"] == 0
    bad = await client.get("/audit-log", params={"actor_kind": "wizard"})
    assert bad.status == 400 and bad.error["field"] == "actor_kind"


@ensureDeferred
async def test_nothing_in_the_api_can_change_or_delete_the_audit_log(client):
    await client.post("/groups", {"name": "a"})
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = await client.request(method, "/audit-log", {} if method != "DELETE" else None)
        assert r.status == 405, (method, r.status)
        assert r.header("allow") == "GET, HEAD"
    for path in ("/audit-log/1", "/audit-log/1/delete"):
        for method in ("GET", "POST", "DELETE"):
            assert (await client.request(method, path)).status == 404
    assert (await client.get("/audit-log")).json["total"] == 1


@ensureDeferred
async def test_the_audit_log_needs_an_administrators_token(anonymous):
    assert (await anonymous.get("/audit-log")).status == 401


@ensureDeferred
async def test_the_offline_policy_is_shown_and_changed_by_parts(client):
    r = await client.get("/offline-policy")
    assert r.status == 200
    assert r.json == {"account_selection": "offline-account", "offline_account_id": None,
                      "restricted_credit": "0.0000", "unknown_users": "deny",
                      "unknown_user_id": None, "password_auth_offline": True, "updated_at": None}
    shared = (await client.post("/accounts", {"name": "Offline Account"})).json
    await client.post("/users", {"username": "unmatched"})
    r = await client.patch("/offline-policy", {"offline_account": "Offline Account",
                                               "restricted_credit": "1.50",
                                               "unknown_users": "charge-user",
                                               "unknown_user": "unmatched"})
    assert r.status == 200, r.json
    assert (r.json["offline_account_id"], r.json["restricted_credit"]) == (shared["id"], "1.5000")
    assert r.json["unknown_users"] == "charge-user" and r.json["updated_at"] == "2025-03-12T10:00:00Z"
    r = await client.patch("/offline-policy", {"account_selection": "cancel",
                                               "password_auth_offline": False})
    assert (r.json["account_selection"], r.json["password_auth_offline"]) == ("cancel", False)
    assert r.json["offline_account_id"] == shared["id"]          # what was not sent stays
    audit = await client.get("/audit-log", params={"object_kind": "offline_policy"})
    assert audit.json["total"] == 2


@ensureDeferred
async def test_a_bad_offline_policy_is_refused_naming_the_field(client):
    await client.post("/users", {"username": "ann"})
    for body, status, field in (
        ({"restricted_credit": "-1"}, 400, "restricted_credit"),
        ({"account_selection": "ask"}, 400, "account_selection"),
        ({"unknown_users": "charge-user"}, 400, "unknown_user"),
        ({"offline_account": "users/ann"}, 404, None),
        ({"offline_account": 1}, 400, "offline_account"),   # ann's personal account
        ({}, 400, None),
        ({"colour": True}, 400, "colour"),
    ):
        r = await client.patch("/offline-policy", body)
        assert r.status == status, (body, r.json)
        if field:
            assert r.error["field"] == field, (body, r.json)
    assert (await client.get("/offline-policy")).json["unknown_users"] == "deny"
