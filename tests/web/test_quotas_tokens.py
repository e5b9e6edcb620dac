"""Quota schedules, API tokens and node enrolment through the admin API."""

from pytest_twisted import ensureDeferred

from pcnet.domain.secrets import hash_token
from tests.fakes import peer


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
async def test_nodes_list_approve_reject(client, api, clock):
    """Invite (a one-time code, shown once), enrol through the registry, list, approve, reject,
    delete (which frees the name: it used to answer 405)."""
    from pcnet.net.registry import NodeStatus

    r = await client.post("/node-invitations", {"name": "print01"})
    assert r.status == 201, r.json
    code, invitation = r.json["code"], r.json["invitation"]
    assert invitation == {"name": "print01", "role": "provider", "approve": True,
                          "created_at": "2025-03-12T10:00:00Z", "expires_at": "2025-03-13T10:00:00Z",
                          "expired": False}
    r = await client.post("/node-invitations", {"name": "site-north", "role": "site", "expires_hours": 2})
    site_code = r.json["code"]
    assert r.json["invitation"]["approve"] is False and r.json["invitation"]["expires_at"] == "2025-03-12T12:00:00Z"
    listed = await client.get("/node-invitations")
    assert [i["name"] for i in listed.json["items"]] == ["print01", "site-north"]
    assert code.encode() not in listed.raw and site_code.encode() not in listed.raw

    assert await api.services.nodes.registry().check("provider", "print01", "cred-1", peer("10.0.0.5"), code) is NodeStatus.APPROVED
    assert await api.services.nodes.registry().check("site", "site-north", "cred-2", peer("10.1.0.1"), site_code) is NodeStatus.PENDING
    assert (await client.get("/node-invitations")).json["items"] == []
    listed = (await client.get("/nodes", params={"status": "pending"})).json
    assert [n["name"] for n in listed["items"]] == ["site-north"]
    assert listed["items"][0] == {**listed["items"][0], "role": "site", "status": "pending",
                                  "address": "10.1.0.1", "approved_at": None}
    assert b"cred" not in (await client.get("/nodes")).raw
    r = await client.post("/nodes/site-north/approve")
    assert r.status == 200 and r.json["status"] == "approved" and r.json["approved_at"].endswith("Z")
    r = await client.post("/nodes/print01/reject")
    assert r.status == 200 and r.json["status"] == "rejected"
    assert (await client.get("/nodes/site-north")).json["status"] == "approved"
    assert [n["name"] for n in (await client.get("/nodes", params={"status": "pending"})).json["items"]] == []
    assert (await client.post("/nodes/nobody/approve")).status == 404
    assert (await client.get("/nodes", params={"status": "maybe"})).status == 400

    assert (await client.delete("/nodes/print01")).status == 204
    assert (await client.get("/nodes/print01")).status == 404
    assert (await client.delete("/nodes/print01")).status == 404
    assert await api.services.nodes.registry().check("provider", "print01", "cred-1", peer("10.0.0.5")) is NodeStatus.REJECTED

    # Invitations expire; they can be withdrawn; a name of another role must be deleted first.
    r = await client.post("/node-invitations", {"name": "mfd-1", "role": "device", "expires_hours": 1})
    clock.advance(3601)
    (item,) = (await client.get("/node-invitations")).json["items"]
    assert item["name"] == "mfd-1" and item["expired"] is True
    assert await api.services.nodes.registry().check("device", "mfd-1", "c", peer("10.2.0.1"), r.json["code"]) is NodeStatus.REJECTED
    assert (await client.delete("/node-invitations/mfd-1")).status == 204
    assert (await client.delete("/node-invitations/mfd-1")).status == 404
    r = await client.post("/node-invitations", {"name": "site-north", "role": "provider"})
    assert r.status == 409, r.json


@ensureDeferred
async def test_node_invitation_fields_are_checked(client):
    for body, field in (({}, "name"), ({"name": "has space"}, "name"), ({"name": "a/b"}, "name"),
                        ({"name": "x" * 256}, "name"), ({"name": "p", "role": "printer"}, "role"),
                        ({"name": "p", "expires_hours": 0}, "expires_hours"),
                        ({"name": "p", "expires_hours": 24 * 31}, "expires_hours"),
                        ({"name": "p", "approve": "yes"}, "approve")):
        r = await client.post("/node-invitations", body)
        assert r.status == 400 and r.error["field"] == field, (body, r.json)


@ensureDeferred
async def test_out_of_range_times_are_a_400_on_every_time_input(client):
    """Offsets that push a time out of the calendar in UTC were an OverflowError (500)."""
    await client.post("/groups", {"name": "staff"})
    quota = (await client.post("/quotas", {"group": "staff", "amount": "5", "period": "weekly"})).json
    for bad in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:59"):
        for key in ("since", "until"):
            r = await client.get("/jobs", params={key: bad})
            assert r.status == 400 and r.error["field"] == key, r.json
        r = await client.patch(f"/quotas/{quota['id']}", {"next_due_at": bad})
        assert r.status == 400 and r.error["field"] == "next_due_at", r.json
    r = await client.patch(f"/quotas/{quota['id']}", {"next_due_at": "9999-12-31T23:59:59Z"})
    assert r.status == 200 and r.json["next_due_at"] == "9999-12-31T23:59:59Z"
