"""Quota schedules and API tokens through the admin API."""

from pytest_twisted import ensureDeferred

from pcnet.domain.secrets import hash_token


@ensureDeferred
async def test_quota_lifecycle(client, clock):
    staff = (await client.post("/groups", {"name": "staff"})).json
    r = await client.post("/quotas", {"group": "staff", "amount": "5.00", "period": "weekly", "cap": "20"})
    assert r.status == 201, r.json
    q = r.json
    # The clock is Wednesday 2025-03-12 10:00 UTC: weekly quotas fall due on Monday.
    assert q["group_id"] == staff["id"] and q["amount"] == "5.0000" and q["cap"] == "20.0000"
    assert q["period"] == "weekly" and q["next_due_at"] == "2025-03-17T00:00:00Z"
    assert q["last_applied_at"] is None
    assert (await client.get(f"/quotas/{q['id']}")).json == q
    r = await client.patch(f"/quotas/{q['id']}", {"period": "monthly", "cap": None})
    assert r.status == 200, r.json
    assert r.json["next_due_at"] == "2025-04-01T00:00:00Z" and r.json["cap"] is None
    r = await client.patch(f"/quotas/{q['id']}", {"next_due_at": "2025-03-13T06:00:00+01:00"})
    assert r.json["next_due_at"] == "2025-03-13T05:00:00Z"
    listed = (await client.get("/quotas")).json
    assert listed["total"] == 1 and listed["items"][0]["id"] == q["id"]
    assert (await client.delete(f"/quotas/{q['id']}")).status == 204
    assert (await client.get(f"/quotas/{q['id']}")).status == 404
    assert (await client.delete(f"/quotas/{q['id']}")).status == 404


@ensureDeferred
async def test_quota_input_is_checked(client):
    await client.post("/groups", {"name": "staff"})
    r = await client.post("/quotas", {"group": "staff", "amount": "5", "period": "fortnightly"})
    assert r.status == 400 and r.error["field"] == "period"
    r = await client.post("/quotas", {"group": "staff", "amount": "-5", "period": "daily"})
    assert r.status == 400 and r.error["field"] == "amount"
    r = await client.post("/quotas", {"group": "nobody", "amount": "5", "period": "daily"})
    assert r.status == 404
    r = await client.patch("/quotas/abc", {"amount": "1"})
    assert r.status == 400 and r.error["field"] == "quota"


@ensureDeferred
async def test_tokens_create_list_revoke(client, anonymous, store):
    root = await store.get_user_by_name("root")
    r = await client.post("/tokens", {"name": "billing script", "user": "root"})
    assert r.status == 201, r.json
    token = r.json["token"]
    assert r.json["api_token"]["user_id"] == root.id
    assert await store.find_api_token(hash_token(token)) is not None
    listed = (await client.get("/tokens")).json
    assert {t["name"] for t in listed["items"]} == {"tests", "billing script"}
    assert token.encode() not in (await client.get("/tokens")).raw
    # The new token works ...
    assert (await anonymous.get("/users", token=token)).status == 200
    # ... until it is revoked.
    assert (await client.delete(f"/tokens/{r.json['api_token']['id']}")).status == 204
    assert (await anonymous.get("/users", token=token)).status == 401
    assert (await client.delete(f"/tokens/{r.json['api_token']['id']}")).status == 404


@ensureDeferred
async def test_tokens_only_for_enabled_administrators(client):
    await client.post("/users", {"username": "ann"})
    r = await client.post("/tokens", {"name": "x", "user": "ann"})
    assert r.status == 400 and r.error["field"] == "user"
    r = await client.post("/tokens", {"name": "service"})
    assert r.status == 201 and r.json["api_token"]["user_id"] is None


@ensureDeferred
async def test_nodes_list_approve_reject(client, store):
    await store.register_node("provider", "print01", "digest-1", "10.0.0.5")
    await store.register_node("site", "site-north", "digest-2", "10.1.0.1")
    listed = (await client.get("/nodes", params={"status": "pending"})).json
    assert [n["name"] for n in listed["items"]] == ["print01", "site-north"]
    assert listed["items"][0] == {**listed["items"][0], "role": "provider", "status": "pending",
                                  "address": "10.0.0.5", "approved_at": None}
    assert b"digest" not in (await client.get("/nodes")).raw
    r = await client.post("/nodes/print01/approve")
    assert r.status == 200 and r.json["status"] == "approved" and r.json["approved_at"].endswith("Z")
    r = await client.post("/nodes/site-north/reject")
    assert r.status == 200 and r.json["status"] == "rejected"
    assert (await client.get("/nodes/print01")).json["status"] == "approved"
    assert [n["name"] for n in (await client.get("/nodes", params={"status": "pending"})).json["items"]] == []
    assert (await client.post("/nodes/nobody/approve")).status == 404
    assert (await client.get("/nodes", params={"status": "maybe"})).status == 400
