"""Held jobs through the admin API: list, release (Find-Me at a chosen printer), cancel. The
Print Provider holding the jobs is a fake session that records what the server pushes to it."""

from __future__ import annotations

import uuid as uuidlib

from pytest_twisted import ensureDeferred

from pcnet.net.line import Operations, RemoteError
from pcnet.web.api import AdminApi

from ._support import ApiClient

COST = {"grey": "0.10", "colour": "0.50"}


async def setup(client):
    await client.post("/users", {"username": "ann", "initial_balance": "10.00"})
    printers = {}
    for name, hold in (("secure", "hold"), ("findme", "find-me"), ("colour", "none"), ("pcl", "none")):
        r = await client.post("/printers", {
            "name": name, "server": "print01", "queue": name, "hold_mode": hold,
            "pdl": "pcl" if name == "pcl" else "postscript",
            "cost_model": {"grey": "0.20", "colour": "1.00"} if name == "colour" else COST})
        printers[name] = r.json
    return printers


async def hold(ops, session, queue, pages=4, colour=1):
    job_uuid = str(uuidlib.uuid4())
    submit = ops.register(Operations()).handlers()["job.submit"]
    reply = await submit(session, {"uuid": job_uuid, "queue": queue, "user": "ann",
                                   "document_name": "thesis.pdf", "pages": pages,
                                   "colour_pages": colour, "copies": 1})
    assert reply["action"] == "hold"
    return job_uuid


@ensureDeferred
async def test_list_release_and_the_charge_when_it_prints(client, ops, session):
    printers = await setup(client)
    job = await hold(ops, session, "secure")
    listed = (await client.get("/held-jobs")).json
    assert listed["total"] == 1 and listed["items"][0]["uuid"] == job
    assert listed["items"][0]["status"] == "held" and listed["items"][0]["cost"] == "0.8000"
    assert (await client.get("/held-jobs", params={"printer": "colour"})).json["total"] == 0
    assert (await client.get("/held-jobs", params={"user": "ann"})).json["total"] == 1
    r = await client.post(f"/held-jobs/{job}/release", {})
    assert r.status == 200, r.json
    assert r.json["status"] == "released" and r.json["printer_id"] == printers["secure"]["id"]
    assert session.pushed == [("job.release", {"uuid": job})]
    assert (await client.get("/held-jobs")).json["total"] == 0
    account = (await client.get("/users/ann/account")).json
    assert account["balance"] == "10.0000"  # not charged until the provider reports it printed
    await ops.register(Operations()).handlers()["job.printed"](session, {"uuid": job})
    assert (await client.get("/users/ann/account")).json["balance"] == "9.2000"
    assert (await client.get(f"/jobs/{job}")).json["status"] == "printed"


@ensureDeferred
async def test_find_me_release_at_a_printer_of_the_same_language(client, ops, session):
    printers = await setup(client)
    job = await hold(ops, session, "findme")
    r = await client.post(f"/held-jobs/{job}/release", {})
    assert r.status == 400 and "Find-Me" in r.error["message"]
    r = await client.post(f"/held-jobs/{job}/release", {"printer": "pcl"})
    assert r.status == 400 and "page description language" in r.error["message"]
    r = await client.post(f"/held-jobs/{job}/release", {"printer": "colour"})
    assert r.status == 200, r.json
    assert session.pushed == [("job.release", {"uuid": job, "target_queue": "colour",
                                               "target_printer_id": printers["colour"]["id"]})]
    await ops.register(Operations()).handlers()["job.printed"](
        session, {"uuid": job, "printer_id": printers["colour"]["id"]})
    printed = (await client.get(f"/jobs/{job}")).json
    assert printed["printer_id"] == printers["colour"]["id"] and printed["cost"] == "1.6000"
    assert (await client.get("/users/ann/account")).json["balance"] == "8.4000"


@ensureDeferred
async def test_release_errors(client, ops, session):
    await setup(client)
    job = await hold(ops, session, "secure")
    session.connected = False
    r = await client.post(f"/held-jobs/{job}/release", {})
    assert r.status == 503 and r.error["code"] == "provider_offline"
    session.connected = True
    session.fail_with = RemoteError("not_found", "CUPS job 7: job 7 is canceled")
    r = await client.post(f"/held-jobs/{job}/release", {})
    assert r.status == 409 and "no longer on the print server" in r.error["message"]
    r = await client.post(f"/held-jobs/{job}/release", {})
    assert r.status == 409  # cancelled now: not held
    r = await client.post(f"/held-jobs/{uuidlib.uuid4()}/release", {})
    assert r.status == 404
    r = await client.post("/held-jobs/not-a-uuid/release", {})
    assert r.status == 400
    expensive = await hold(ops, session, "secure", pages=40, colour=40)  # 20.00 > 10.00
    session.fail_with = None
    r = await client.post(f"/held-jobs/{expensive}/release", {})
    assert r.status == 409 and r.error["code"] == "insufficient_funds"


@ensureDeferred
async def test_cancel(client, ops, session):
    await setup(client)
    job = await hold(ops, session, "secure")
    r = await client.post(f"/held-jobs/{job}/cancel", {"reason": "wrong document"})
    assert r.status == 200 and r.json["status"] == "cancelled" and r.json["reason"] == "wrong document"
    assert session.pushed == [("job.cancel", {"uuid": job, "reason": "wrong document"})]
    r = await client.post(f"/held-jobs/{job}/cancel", {})
    assert r.status == 409


@ensureDeferred
async def test_a_job_is_named_by_uuid_or_by_its_job_log_id_and_shows_who_acted_on_it(
        client, ops, session):
    """The integer id job rows carry works wherever a job is named; the job log keeps who
    released a job after it printed, and who cancelled one."""
    await setup(client)
    job = await hold(ops, session, "secure")
    row = (await client.get(f"/jobs/{job}")).json
    assert row["printer"] == "secure" and row["released_by"] == row["cancelled_by"] == ""
    assert (await client.get(f"/jobs/{row['id']}")).json["uuid"] == job
    r = await client.post(f"/held-jobs/{row['id']}/release", {})
    assert r.status == 200 and r.json["released_by"] == "token:1"
    printed = ops.register(Operations()).handlers()["job.printed"]
    await printed(session, {"uuid": job})
    after = (await client.get(f"/jobs/{job}")).json
    assert after["status"] == "printed" and after["released_by"] == "token:1"
    other = await hold(ops, session, "secure")
    r = await client.post(f"/held-jobs/{other}/cancel", {})
    assert r.json["cancelled_by"] == "token:1" and r.json["reason"] == "cancelled by an administrator"


@ensureDeferred
async def test_with_no_print_server_connected_a_release_is_503_and_a_cancel_waits(
        services, clock, admin_token, ops, session):
    client = ApiClient(AdminApi(services, clock), admin_token)
    await setup(client)
    job = await hold(ops, session, "secure")
    session.connected = False
    r = await client.post(f"/held-jobs/{job}/release", {})
    assert r.status == 503 and r.error["code"] == "provider_offline"
    r = await client.post(f"/held-jobs/{job}/cancel", {})
    assert r.status == 200 and r.json["status"] == "cancelled"   # the provider asks job.status later
    assert (await client.post(f"/held-jobs/{uuidlib.uuid4()}/cancel", {})).status == 404


@ensureDeferred
async def test_a_release_runs_the_account_rules_again(client, ops, session):
    """A held job charged to a shared account whose access was revoked meanwhile, or of a user
    disabled meanwhile, is not released: 409 `denied` with the decision's reason, nothing
    pushed to the print server, the job still held."""
    await setup(client)
    await client.post("/accounts", {"name": "physics", "restricted": False})
    assert (await client.put("/accounts/physics/access/users/ann")).status == 204
    job_uuid = str(uuidlib.uuid4())
    submit = ops.register(Operations()).handlers()["job.submit"]
    account_id = (await client.get("/accounts/physics")).json["id"]
    reply = await submit(session, {"uuid": job_uuid, "queue": "secure", "user": "ann", "pages": 2,
                                   "account_id": account_id})
    assert reply["action"] == "hold" and reply["account_id"] == account_id
    await client.delete("/accounts/physics/access/users/ann")
    r = await client.post(f"/held-jobs/{job_uuid}/release", {})
    assert r.status == 409 and r.error["code"] == "denied"
    assert "account not available: ann may not charge this account" in r.error["message"]
    assert session.pushed == []
    assert (await client.get(f"/jobs/{job_uuid}")).json["status"] == "held"

    own = await hold(ops, session, "secure")
    await client.patch("/users/ann", {"disabled": True})
    r = await client.post(f"/held-jobs/{own}/release", {})
    assert r.status == 409 and "user disabled: ann" in r.error["message"]
    assert session.pushed == []
