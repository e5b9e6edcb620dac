"""What administrators see of offline jobs with problems and of journal entries Print Providers
quarantined, through the admin API: the job log's `problem` filter, the quarantine listing, and
a retry asked of the print server."""

from __future__ import annotations

import uuid as uuidlib

from pytest_twisted import ensureDeferred

from pcnet.net.line import Operations


async def setup(client):
    await client.post("/users", {"username": "ann", "initial_balance": "10.00"})
    await client.post("/printers", {"name": "office", "server": "print01", "queue": "office",
                                    "cost_model": {"grey": "0.10", "colour": "0.50"}})


def handlers(ops):
    return ops.register(Operations()).handlers()


@ensureDeferred
async def test_offline_jobs_with_a_problem_are_listed_for_an_administrator(client, ops, session, clock):
    await setup(client)
    offline = handlers(ops)["job.offline"]
    base = {"queue": "office", "user": "ann", "pages": 1, "printed_at": clock.seconds() - 60}
    huge = str(uuidlib.uuid4())
    reply = await offline(session, {**base, "uuid": huge, "copies": 4_294_967_295})
    assert reply["charged"] is False and reply["problem"].startswith("over the job limits")
    fine = str(uuidlib.uuid4())
    assert (await offline(session, {**base, "uuid": fine}))["problem"] == ""

    listed = (await client.get("/jobs", params={"problem": "true"})).json
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert item["uuid"] == huge and item["status"] == "printed" and item["copies"] == 4_294_967_295
    assert item["problem"] == ("over the job limits: 4294967295 copies (limit 9999); "
                               "not charged (offline policy flag)")
    without = (await client.get("/jobs", params={"problem": "false"})).json
    assert [j["uuid"] for j in without["items"]] == [fine]
    assert (await client.get("/jobs")).json["total"] == 2
    assert (await client.get("/users/ann/account")).json["balance"] == "9.9000"
    bad = await client.get("/jobs", params={"problem": "maybe"})
    assert bad.status == 400 and bad.error["field"] == "problem"


async def quarantine(ops, session, key, **extra):
    fields = {"key": key, "kind": "job.offline", "uuid": str(uuidlib.uuid4()),
              "error": {"code": "not_found", "message": "no printer for queue 'annex'"},
              "record": {"queue": "annex", "pages": 3}, "state": "quarantined"}
    fields.update(extra)
    return await handlers(ops)["journal.quarantined"](session, fields)


@ensureDeferred
async def test_quarantined_entries_are_listed_and_a_report_again_updates_them(client, ops, session):
    first = await quarantine(ops, session, "000000000001-a")
    await quarantine(ops, session, "000000000002-b")
    again = await quarantine(ops, session, "000000000001-a",
                             error={"code": "invalid", "message": "pages: bad"})
    assert again["id"] == first["id"]
    listed = (await client.get("/journal-quarantine")).json
    assert listed["total"] == 2
    assert [e["key"] for e in listed["items"]] == ["000000000002-b", "000000000001-a"]
    one = (await client.get(f"/journal-quarantine/{first['id']}")).json
    assert one["node"] == "print01" and one["state"] == "quarantined"
    assert one["error"] == {"code": "invalid", "message": "pages: bad"}
    assert one["record"] == {"queue": "annex", "pages": 3} and one["kind"] == "job.offline"
    assert (await client.get("/journal-quarantine", params={"node": "print02"})).json["total"] == 0
    assert (await client.get("/journal-quarantine", params={"state": "resolved"})).json["total"] == 0
    assert (await client.get("/journal-quarantine/999")).status == 404
    assert (await client.get("/journal-quarantine", params={"state": "lost"})).status == 400


@ensureDeferred
async def test_a_retry_is_asked_of_the_print_server_and_needs_it_connected(client, ops, session):
    entry = await quarantine(ops, session, "000000000001-a")
    session.answers["journal.retry"] = lambda fields: {"restored": fields["keys"], "unknown": []}
    r = await client.post(f"/journal-quarantine/{entry['id']}/retry")
    assert r.status == 200, r.json
    assert r.json["state"] == "retrying"
    assert session.pushed == [("journal.retry", {"keys": ["000000000001-a"]})]
    # The print server replays it and reports the outcome.
    await quarantine(ops, session, "000000000001-a", state="resolved")
    assert (await client.get(f"/journal-quarantine/{entry['id']}")).json["state"] == "resolved"
    again = await client.post(f"/journal-quarantine/{entry['id']}/retry")
    assert again.status == 409

    other = await quarantine(ops, session, "000000000002-b")
    session.answers["journal.retry"] = lambda fields: {"restored": [], "unknown": fields["keys"]}
    gone = await client.post(f"/journal-quarantine/{other['id']}/retry")
    assert gone.status == 409 and "no longer holds" in gone.error["message"]
    session.connected = False
    offline = await client.post(f"/journal-quarantine/{other['id']}/retry")
    assert offline.status == 503 and offline.error["code"] == "provider_offline"
