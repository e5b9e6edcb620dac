"""Importing jobs (PaperCut's processJob) and reading the job log through the admin API."""

import uuid

from pytest_twisted import ensureDeferred

COST_MODEL = {"grey": "0.10", "colour": "0.50", "duplex_discount": "0.02",
              "sizes": {"A3": {"grey": "0.20", "colour": "1.00"}}}


async def setup(client, balance="10.00", **user):
    user = (await client.post("/users", {"username": "ann", "initial_balance": balance, **user})).json
    printer = (await client.post("/printers", {"name": "lib-colour", "cost_model": COST_MODEL})).json
    return user, printer


@ensureDeferred
async def test_issue_scenario_user_printer_import_charge_balance_ledger(client):
    """The issue's scenario: a user, a printer with a colour/duplex cost model, an imported job,
    the right charge, the balance after it and the ledger row."""
    user, printer = await setup(client)
    r = await client.post("/jobs/import", {
        "username": "ann", "printer": "lib-colour", "pages": 10, "colour_pages": 4, "duplex": True,
        "copies": 2, "paper_size": "A4", "document_name": "thesis.pdf", "client": "lab-pc-7",
    })
    assert r.status == 200, r.json
    # Per copy: 6 grey sides at 0.10-0.02 plus 4 colour sides at 0.50-0.02 = 2.40; 2 copies.
    assert r.json["decision"] == {"action": "print", "cost": "4.8000", "reason": "",
                                  "account_id": user["personal_account_id"]}
    assert r.json["cost"] == "4.8000" and r.json["charged"] is True
    assert r.json["balance"] == "5.2000" and r.json["account"]["balance"] == "5.2000"
    job = r.json["job"]
    assert job["status"] == "printed" and job["printer_id"] == printer["id"]
    assert job["user_id"] == user["id"] and job["total_pages"] == 20 and job["client"] == "lab-pc-7"

    ledger = (await client.get(f"/accounts/{user['personal_account_id']}/transactions")).json
    charge = ledger["items"][0]
    assert charge["kind"] == "charge" and charge["amount"] == "-4.8000"
    assert charge["balance_after"] == "5.2000" and charge["reference"] == job["uuid"]
    assert ledger["items"][1]["kind"] == "initial"

    # An A3 page costs the A3 prices: 1 grey (0.20) + 1 colour (1.00).
    r = await client.post("/jobs/import", {"username": "ann", "printer": printer["id"], "pages": 2,
                                           "colour_pages": 1, "paper_size": "a3"})
    assert r.json["cost"] == "1.2000" and r.json["balance"] == "4.0000"

    log = (await client.get("/jobs", params={"user": "ann"})).json
    assert log["total"] == 2 and log["items"][0]["cost"] == "1.2000"
    assert (await client.get(f"/jobs/{job['uuid']}")).json == job


@ensureDeferred
async def test_import_denied_for_insufficient_balance_charges_nothing(client):
    user, _ = await setup(client, balance="1.00")
    r = await client.post("/jobs/import", {"username": "ann", "printer": "lib-colour", "pages": 20})
    assert r.status == 200
    assert r.json["decision"]["action"] == "deny" and "insufficient balance" in r.json["decision"]["reason"]
    assert r.json["charged"] is False and r.json["job"]["status"] == "denied"
    assert r.json["balance"] == "1.0000"
    ledger = (await client.get(f"/accounts/{user['personal_account_id']}/transactions")).json
    assert [t["kind"] for t in ledger["items"]] == ["initial"]


@ensureDeferred
async def test_import_to_a_shared_account_needs_access(client):
    await setup(client)
    assert (await client.post("/accounts", {"name": "Project X", "initial_balance": "50"})).status == 201
    job = {"username": "ann", "printer": "lib-colour", "pages": 10, "account": "Project X"}
    r = await client.post("/jobs/import", job)
    assert r.json["decision"]["action"] == "deny" and "account not available" in r.json["decision"]["reason"]
    await client.put("/accounts/Project X/access/users/ann")
    r = await client.post("/jobs/import", job)
    assert r.json["decision"]["action"] == "print" and r.json["account"]["name"] == "Project X"
    assert r.json["balance"] == "49.0000"
    r = await client.post("/jobs/import", {**job, "account": "No such"})
    assert r.status == 404


@ensureDeferred
async def test_import_is_idempotent(client):
    user, _ = await setup(client)
    job = {"username": "ann", "printer": "lib-colour", "pages": 10, "uuid": str(uuid.uuid4())}
    first = await client.post("/jobs/import", job)
    again = await client.post("/jobs/import", job)
    assert first.json == again.json
    assert again.json["balance"] == "9.0000"
    keyed = {"username": "ann", "printer": "lib-colour", "pages": 5}
    one = await client.post("/jobs/import", keyed, headers={"Idempotency-Key": "provider-17-job-3"})
    two = await client.post("/jobs/import", keyed, headers={"Idempotency-Key": "provider-17-job-3"})
    assert one.json["job"]["uuid"] == two.json["job"]["uuid"]
    assert two.json["balance"] == "8.5000"
    clash = await client.post("/jobs/import", {**job, "pages": 11})
    assert clash.status == 409 and clash.error["code"] == "idempotency_conflict"
    ledger = (await client.get(f"/accounts/{user['personal_account_id']}/transactions")).json
    assert [t["kind"] for t in ledger["items"]] == ["charge", "charge", "initial"]


@ensureDeferred
async def test_import_of_an_unknown_user_is_logged_as_denied(client):
    await setup(client)
    r = await client.post("/jobs/import", {"username": "mallory", "printer": "lib-colour", "pages": 1})
    assert r.status == 200 and r.json["decision"]["action"] == "deny"
    assert r.json["account"] is None and r.json["balance"] is None
    assert r.json["job"]["user_id"] is None and r.json["job"]["username"] == "mallory"


@ensureDeferred
async def test_import_input_is_checked(client):
    await setup(client)
    base = {"username": "ann", "printer": "lib-colour", "pages": 3}
    cases = [
        ({**base, "pages": -1}, "pages"),
        ({**base, "pages": 2.5}, "pages"),
        ({**base, "pages": "3"}, "pages"),
        ({**base, "pages": 2 ** 63}, "pages"),   # more than the job log can store
        ({**base, "copies": 2 ** 63}, "copies"),
        ({**base, "colour_pages": 4}, "colour_pages"),
        ({**base, "copies": 0}, "copies"),
        ({**base, "duplex": "yes"}, "duplex"),
        ({**base, "uuid": "abc"}, "uuid"),
        ({**base, "printer": True}, "printer"),
        ({**base, "colour": 1}, "colour"),
        ({"printer": "lib-colour", "pages": 3}, "username"),
        ({**base, "document_name": "x" * 5000}, "document_name"),
    ]
    for body, field in cases:
        r = await client.post("/jobs/import", body)
        assert r.status == 400, (body, r.json)
        assert r.error["field"] == field, (body, r.json)
        assert r.error["message"].startswith(field + ":")
    assert (await client.post("/jobs/import", {**base, "printer": "nope"})).status == 404


@ensureDeferred
async def test_an_import_over_the_job_limits_is_denied_and_logged_like_a_printed_job(client):
    """The import runs the one validation and decision: a job claiming more than the server's
    job limits is a logged deny with the stable reason, not a charge (nor a 400)."""
    await setup(client)
    for body, reason in (
        ({"copies": 4_294_967_295}, "over the job limits: 4294967295 copies (limit 9999)"),
        ({"pages": 10 ** 9}, "over the job limits: 1000000000 pages per copy (limit 10000)"),
        ({"pages": 5_000, "copies": 100}, "over the job limits: 500000 pages in all (limit 100000)"),
    ):
        r = await client.post("/jobs/import", {"username": "ann", "printer": "lib-colour",
                                               "pages": 1, **body})
        assert r.status == 200, r.json
        assert r.json["decision"] == {"action": "deny", "cost": "0.0000", "reason": reason,
                                      "account_id": r.json["account"]["id"]}
        assert r.json["charged"] is False and r.json["balance"] == "10.0000"
        stored = (await client.get(f"/jobs/{r.json['job']['uuid']}")).json
        assert stored["status"] == "denied" and stored["reason"] == reason
        assert stored["copies"] == body.get("copies", 1)


@ensureDeferred
async def test_job_log_filters(client, clock):
    user, printer = await setup(client, balance="100")
    bob = (await client.post("/users", {"username": "bob", "initial_balance": "100"})).json
    other = (await client.post("/printers", {"name": "other"})).json
    await client.post("/jobs/import", {"username": "ann", "printer": "lib-colour", "pages": 1})
    clock.advance(3600)
    await client.post("/jobs/import", {"username": "bob", "printer": "other", "pages": 1})
    clock.advance(3600)
    await client.post("/jobs/import", {"username": "ann", "printer": "other", "pages": 10000,
                                       "colour_pages": 10000})   # over the balance: denied
    every = (await client.get("/jobs")).json
    assert every["total"] == 3
    assert [j["username"] for j in every["items"]] == ["ann", "bob", "ann"]   # newest first

    async def names(**params):
        page = (await client.get("/jobs", params=params)).json
        return [(j["username"], j["printer_id"]) for j in page["items"]]

    assert await names(user=str(bob["id"])) == [("bob", other["id"])]
    assert await names(printer="other") == [("ann", other["id"]), ("bob", other["id"])]
    assert await names(status="denied") == [("ann", other["id"])]
    assert await names(account=str(user["personal_account_id"]), status="printed") == [("ann", printer["id"])]
    assert await names(since="2025-03-12T11:00:00Z") == [("ann", other["id"]), ("bob", other["id"])]
    assert await names(until="2025-03-12T11:00:00Z") == [("ann", printer["id"])]
    assert await names(since="2025-03-12T10:30:00Z", until="2025-03-12T11:30:00Z") == [("bob", other["id"])]
    r = await client.get("/jobs", params={"status": "lost"})
    assert r.status == 400 and r.error["field"] == "status"
    r = await client.get("/jobs", params={"since": "2025-03-12T10:00:00"})
    assert r.status == 400 and r.error["field"] == "since"
    assert (await client.get("/jobs", params={"user": "nobody"})).status == 404
    assert (await client.get(f"/jobs/{uuid.uuid4()}")).status == 404
    assert (await client.get("/jobs/not-a-uuid")).status == 400
