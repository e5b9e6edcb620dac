"""Users and groups through the admin API."""

from pytest_twisted import ensureDeferred

from pcnet.domain.secrets import verify_secret


@ensureDeferred
async def test_create_user_hashes_secrets_and_never_returns_them(client, store):
    r = await client.post("/users", {
        "username": "ann", "full_name": "Ann Smith", "email": "ann@example.org",
        "department": "Physics", "office": "B12", "card_numbers": ["1234", "5678"],
        "password": "correct horse", "pin": "4321", "initial_balance": "5.00",
        "restricted": True, "overdraft": "1.00",
    })
    assert r.status == 201, r.json
    user = r.json
    assert user["username"] == "ann" and user["card_numbers"] == ["1234", "5678"]
    assert user["has_password"] and user["has_pin"]
    assert b"correct horse" not in r.raw and b"4321" not in r.raw and b"scrypt" not in r.raw
    stored = await store.get_user(user["id"])
    assert verify_secret("correct horse", stored.password_hash)
    assert verify_secret("4321", stored.pin_hash)
    account = (await client.get(f"/users/{user['id']}/account")).json
    assert account["kind"] == "personal" and account["balance"] == "5.0000"
    assert account["restricted"] is True and account["overdraft"] == "1.0000"


@ensureDeferred
async def test_get_user_by_id_username_and_prefixed_numeric_username(client):
    ann = (await client.post("/users", {"username": "ann"})).json
    num = (await client.post("/users", {"username": "20231234"})).json
    assert (await client.get(f"/users/{ann['id']}")).json["username"] == "ann"
    assert (await client.get("/users/ann")).json["id"] == ann["id"]
    assert (await client.get("/users/name:20231234")).json["id"] == num["id"]
    r = await client.get("/users/20231234")   # digits are an id
    assert r.status == 404 and r.error["code"] == "not_found"
    assert (await client.get("/users/nobody")).status == 404


@ensureDeferred
async def test_duplicate_username_is_a_conflict(client):
    assert (await client.post("/users", {"username": "ann"})).status == 201
    r = await client.post("/users", {"username": "ann"})
    assert r.status == 409 and r.error["code"] == "conflict"


@ensureDeferred
async def test_list_users_pages_and_searches(client):
    for name in ("bob", "carol", "dave", "erin"):
        assert (await client.post("/users", {"username": name, "full_name": name.title()})).status == 201
    page = (await client.get("/users", params={"limit": "2", "offset": "1"})).json
    assert page["total"] == 5 and page["offset"] == 1 and page["limit"] == 2   # root + 4
    assert [u["username"] for u in page["items"]] == ["carol", "dave"]
    found = (await client.get("/users", params={"search": "aro"})).json
    assert [u["username"] for u in found["items"]] == ["carol"]


@ensureDeferred
async def test_patch_user_changes_only_what_is_sent(client, store):
    ann = (await client.post("/users", {"username": "ann", "full_name": "Ann", "password": "pw1"})).json
    r = await client.patch("/users/ann", {"email": "a@example.org", "disabled": True, "password": None})
    assert r.status == 200, r.json
    assert r.json["full_name"] == "Ann" and r.json["email"] == "a@example.org"
    assert r.json["disabled"] is True and r.json["has_password"] is False
    r = await client.patch(f"/users/{ann['id']}", {"pin": "9876"})
    assert r.json["has_pin"] is True
    assert verify_secret("9876", (await store.get_user(ann["id"])).pin_hash)


@ensureDeferred
async def test_patch_user_refuses_unknown_fields_and_empty_patches(client):
    await client.post("/users", {"username": "ann"})
    r = await client.patch("/users/ann", {"usrname": "x"})
    assert r.status == 400 and r.error["field"] == "usrname" and "unknown field" in r.error["message"]
    r = await client.patch("/users/ann", {"username": "x"})   # usernames never change
    assert r.status == 400 and r.error["field"] == "username"
    r = await client.patch("/users/ann", {})
    assert r.status == 400


@ensureDeferred
async def test_groups_and_members(client):
    await client.post("/users", {"username": "ann"})
    bob = (await client.post("/users", {"username": "bob"})).json
    r = await client.post("/groups", {"name": "staff", "description": "All staff"})
    assert r.status == 201
    staff = r.json
    assert (await client.post("/groups", {"name": "staff"})).status == 409
    assert (await client.get("/groups/staff")).json == staff
    assert (await client.get(f"/groups/{staff['id']}")).json == staff
    assert (await client.put("/groups/staff/members/ann")).status == 204
    assert (await client.put("/groups/staff/members/ann")).status == 204      # idempotent
    assert (await client.put(f"/groups/staff/members/{bob['id']}")).status == 204
    members = (await client.get("/groups/staff/members")).json
    assert sorted(u["username"] for u in members["items"]) == ["ann", "bob"]
    groups = (await client.get("/users/ann/groups")).json
    assert [g["name"] for g in groups["items"]] == ["staff"]
    assert (await client.delete("/groups/staff/members/ann")).status == 204
    assert (await client.delete("/groups/staff/members/ann")).status == 204   # idempotent
    members = (await client.get("/groups/staff/members")).json
    assert [u["username"] for u in members["items"]] == ["bob"]
    listed = (await client.get("/groups")).json
    assert listed["total"] == 1 and listed["items"] == [staff]
    assert (await client.put("/groups/staff/members/nobody")).status == 404
    assert (await client.get("/groups/nothing/members")).status == 404


@ensureDeferred
async def test_names_with_url_special_characters_round_trip(client):
    from urllib.parse import quote

    for name in ("50%41 off", "a+b", "Ünïcode ☃", "x?y#z", "semi;colon"):
        created = await client.post("/groups", {"name": name})
        assert created.status == 201, (name, created.json)
        r = await client.get("/groups/" + quote(name, safe=""))
        assert r.status == 200 and r.json["name"] == name, (name, r.json)


@ensureDeferred
async def test_a_token_cannot_lock_out_its_own_user(client):
    for change in ({"disabled": True}, {"admin": False}):
        r = await client.patch("/users/root", change)
        assert r.status == 409 and r.error["code"] == "conflict"
    assert (await client.patch("/users/root", {"full_name": "Root"})).status == 200


@ensureDeferred
async def test_index_without_a_trailing_slash(anonymous):
    for path in ("", "/"):
        r = await anonymous.get(path)
        assert r.status == 200 and r.json["name"] == "pcnet admin API"
