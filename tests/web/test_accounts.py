"""Accounts through the admin API: shared accounts, access, balance changes and the ledger."""

import uuid

from pytest_twisted import ensureDeferred


@ensureDeferred
async def test_shared_account_create_get_update(client, store):
    r = await client.post("/accounts", {"name": "Science", "comment": "faculty"})
    assert r.status == 201, r.json
    science = r.json
    assert science["kind"] == "shared" and science["balance"] == "0.0000"
    r = await client.post("/accounts", {"name": "Physics", "parent": "Science", "pin": "7777",
                                        "restricted": True, "overdraft": "2.50",
                                        "initial_balance": "10"})
    assert r.status == 201, r.json
    physics = r.json
    assert physics["parent_id"] == science["id"] and physics["has_pin"] is True
    assert physics["balance"] == "10.0000" and physics["overdraft"] == "2.5000"
    assert b"7777" not in r.raw
    assert (await client.get("/accounts/Physics")).json == physics
    assert (await client.get(f"/accounts/{physics['id']}")).json == physics
    assert (await client.post("/accounts", {"name": "Physics"})).status == 409

    r = await client.patch("/accounts/Physics", {"name": "Physics Dept", "pin": None, "overdraft": "0"})
    assert r.status == 200, r.json
    assert r.json["name"] == "Physics Dept" and r.json["has_pin"] is False
    assert r.json["overdraft"] == "0.0000" and r.json["parent_id"] == science["id"]
    r = await client.patch("/accounts/Physics Dept", {"parent": None})
    assert r.json["parent_id"] is None

    listed = (await client.get("/accounts", params={"kind": "shared"})).json
    assert [a["name"] for a in listed["items"]] == ["Physics Dept", "Science"]
    assert listed["total"] == 2


@ensureDeferred
async def test_account_parent_must_be_shared_and_not_a_loop(client):
    a = (await client.post("/accounts", {"name": "A"})).json
    b = (await client.post("/accounts", {"name": "B", "parent": a["id"]})).json
    r = await client.patch("/accounts/A", {"parent": b["id"]})
    assert r.status == 400 and r.error["field"] == "parent" and "loop" in r.error["message"]
    r = await client.patch("/accounts/A", {"parent": a["id"]})
    assert r.status == 400 and r.error["field"] == "parent"
    ann = (await client.post("/users", {"username": "ann"})).json
    r = await client.post("/accounts", {"name": "C", "parent": ann["personal_account_id"]})
    assert r.status == 400 and r.error["field"] == "parent"


@ensureDeferred
async def test_personal_accounts_refuse_shared_only_fields(client):
    ann = (await client.post("/users", {"username": "ann"})).json
    acct = ann["personal_account_id"]
    r = await client.patch(f"/accounts/{acct}", {"name": "x"})
    assert r.status == 400 and r.error["field"] == "name"
    r = await client.patch(f"/accounts/{acct}", {"restricted": False, "overdraft": "5"})
    assert r.status == 200 and r.json["restricted"] is False and r.json["overdraft"] == "5.0000"
    r = await client.get(f"/accounts/{acct}/access")
    assert r.status == 400 and r.error["field"] == "account"


@ensureDeferred
async def test_access_grant_and_revoke(client, store):
    ann = (await client.post("/users", {"username": "ann"})).json
    staff = (await client.post("/groups", {"name": "staff"})).json
    acct = (await client.post("/accounts", {"name": "Project X"})).json
    assert (await client.put("/accounts/Project X/access/users/ann")).status == 204
    assert (await client.put("/accounts/Project X/access/users/ann")).status == 204
    assert (await client.put("/accounts/Project X/access/groups/staff")).status == 204
    access = (await client.get("/accounts/Project X/access")).json
    assert access == {"users": [ann["id"]], "groups": [staff["id"]]}
    assert await store.user_can_use_account(ann["id"], acct["id"])
    assert (await client.delete("/accounts/Project X/access/users/ann")).status == 204
    assert (await client.delete(f"/accounts/{acct['id']}/access/groups/{staff['id']}")).status == 204
    assert (await client.get("/accounts/Project X/access")).json == {"users": [], "groups": []}
    assert (await client.put("/accounts/Project X/access/users/nobody")).status == 404


@ensureDeferred
async def test_adjust_and_set_balance_write_ledger_rows(client):
    ann = (await client.post("/users", {"username": "ann", "initial_balance": "2.00"})).json
    acct = ann["personal_account_id"]
    r = await client.post(f"/accounts/{acct}/adjust", {"amount": "-1.50", "comment": "refund mistake"})
    assert r.status == 200, r.json
    assert r.json["transaction"]["amount"] == "-1.5000"
    assert r.json["transaction"]["balance_after"] == "0.5000"
    assert r.json["transaction"]["kind"] == "adjust"
    assert r.json["account"]["balance"] == "0.5000"
    r = await client.post(f"/accounts/{acct}/set-balance", {"balance": "10.00", "comment": "term start"})
    assert r.status == 200, r.json
    assert r.json["transaction"]["kind"] == "set" and r.json["transaction"]["amount"] == "9.5000"
    assert r.json["account"]["balance"] == "10.0000"
    history = (await client.get(f"/accounts/{acct}/transactions")).json
    assert [t["kind"] for t in history["items"]] == ["set", "adjust", "initial"]
    assert history["total"] == 3
    assert history["items"][1]["comment"] == "refund mistake"
    page = (await client.get(f"/accounts/{acct}/transactions", params={"offset": "1", "limit": "1"})).json
    assert [t["kind"] for t in page["items"]] == ["adjust"] and page["total"] == 3


@ensureDeferred
async def test_adjust_may_take_an_account_below_zero(client):
    ann = (await client.post("/users", {"username": "ann"})).json
    r = await client.post(f"/accounts/{ann['personal_account_id']}/adjust", {"amount": "-3"})
    assert r.status == 200 and r.json["account"]["balance"] == "-3.0000"


@ensureDeferred
async def test_adjust_is_idempotent_with_an_idempotency_key(client):
    ann = (await client.post("/users", {"username": "ann"})).json
    path = f"/accounts/{ann['personal_account_id']}/adjust"
    first = await client.post(path, {"amount": "5.00"}, headers={"Idempotency-Key": "top-up-42"})
    again = await client.post(path, {"amount": "5.00"}, headers={"Idempotency-Key": "top-up-42"})
    assert first.status == again.status == 200
    assert first.json["transaction"] == again.json["transaction"]
    assert again.json["account"]["balance"] == "5.0000"
    other = await client.post(path, {"amount": "7.00"}, headers={"Idempotency-Key": "top-up-42"})
    assert other.status == 409 and other.error["code"] == "idempotency_conflict"
    history = (await client.get(f"/accounts/{ann['personal_account_id']}/transactions")).json
    assert history["total"] == 1


@ensureDeferred
async def test_adjust_and_set_are_idempotent_with_a_uuid(client):
    ann = (await client.post("/users", {"username": "ann"})).json
    acct = ann["personal_account_id"]
    u = str(uuid.uuid4())
    first = await client.post(f"/accounts/{acct}/adjust", {"amount": "1", "uuid": u})
    again = await client.post(f"/accounts/{acct}/adjust", {"amount": "1", "uuid": u})
    assert first.json["transaction"]["uuid"] == u == again.json["transaction"]["uuid"]
    assert again.json["account"]["balance"] == "1.0000"
    # A different uuid in the header and the body is refused.
    r = await client.post(f"/accounts/{acct}/adjust", {"amount": "1", "uuid": u},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status == 400 and r.error["field"] == "uuid"
    s = str(uuid.uuid4())
    one = await client.post(f"/accounts/{acct}/set-balance", {"balance": "20", "uuid": s})
    two = await client.post(f"/accounts/{acct}/set-balance", {"balance": "20", "uuid": s})
    assert one.json["transaction"] == two.json["transaction"]
    assert two.json["account"]["balance"] == "20.0000"
    clash = await client.post(f"/accounts/{acct}/set-balance", {"balance": "30", "uuid": s})
    assert clash.status == 409
    # The same uuid on another kind of request is a clash too.
    clash = await client.post(f"/accounts/{acct}/adjust", {"amount": "1", "uuid": s})
    assert clash.status == 409


@ensureDeferred
async def test_money_input_is_strict(client):
    ann = (await client.post("/users", {"username": "ann"})).json
    path = f"/accounts/{ann['personal_account_id']}/adjust"
    r = await client.post(path, {"amount": 1.5})
    assert r.status == 400 and r.error["field"] == "amount" and "not a number with a fraction" in r.error["message"]
    r = await client.post(path, {"amount": "1.23456"})
    assert r.status == 400 and "4 decimal places" in r.error["message"]
    r = await client.post(path, {"amount": "0"})
    assert r.status == 400 and "zero" in r.error["message"]
    r = await client.post(path, {"amount": "99999999999"})
    assert r.status == 400 and r.error["field"] == "amount"
    r = await client.post(path, {})
    assert r.status == 400 and r.error["field"] == "amount" and "required" in r.error["message"]
    assert (await client.post("/accounts/999999/adjust", {"amount": "1"})).status == 404
