"""Printers, their cost models and filters, through the admin API."""

from pytest_twisted import ensureDeferred

COLOUR_DUPLEX = {"grey": "0.10", "colour": "0.50", "duplex_discount": "0.02",
                 "sizes": {"A3": {"grey": "0.20", "colour": "1.00"}}}


@ensureDeferred
async def test_create_printer_with_cost_model_and_filters(client, store):
    r = await client.post("/printers", {
        "name": "lib-colour", "server": "print01", "queue": "lib-colour", "location": "Library",
        "cost_model": COLOUR_DUPLEX,
        "filters": {"max_pages": 200, "max_copies": 20, "max_cost": "25.00", "grey_only": False,
                    "duplex_only": True, "deny_document_patterns": [r"\.exe$", "^secret"],
                    "duplicate_window_seconds": 60},
        "hold_mode": "hold", "failure_mode": "hold", "pdl": "postscript",
    })
    assert r.status == 201, r.json
    p = r.json
    assert p["cost_model"] == {"grey": "0.1000", "colour": "0.5000", "duplex_discount": "0.0200",
                               "sizes": {"A3": {"grey": "0.2000", "colour": "1.0000"}}}
    assert p["filters"]["max_cost"] == "25.0000" and p["filters"]["duplex_only"] is True
    assert p["filters"]["deny_document_patterns"] == [r"\.exe$", "^secret"]
    assert p["hold_mode"] == "hold" and p["failure_mode"] == "hold" and p["disabled"] is False
    stored = await store.get_printer(p["id"])
    assert str(stored.cost_model.sizes["A3"][1]) == "1.0000"
    assert (await client.get("/printers/lib-colour")).json == p
    assert (await client.get(f"/printers/{p['id']}")).json == p
    assert (await client.post("/printers", {"name": "lib-colour"})).status == 409


@ensureDeferred
async def test_printer_defaults(client):
    r = await client.post("/printers", {"name": "plain", "disabled": True})
    assert r.status == 201
    assert r.json["cost_model"] == {"grey": "0.1000", "colour": "0.5000", "duplex_discount": "0.0000", "sizes": {}}
    assert r.json["filters"]["max_pages"] is None and r.json["hold_mode"] == "none"
    assert r.json["failure_mode"] == "print-log-later" and r.json["disabled"] is True


@ensureDeferred
async def test_rename_keeps_the_id_and_patch_merges_cost_model_and_filters(client):
    p = (await client.post("/printers", {"name": "old", "cost_model": COLOUR_DUPLEX,
                                         "filters": {"max_pages": 100, "grey_only": True}})).json
    r = await client.patch("/printers/old", {"name": "new", "cost_model": {"colour": "0.40"},
                                             "filters": {"max_pages": None, "max_copies": 5}})
    assert r.status == 200, r.json
    assert r.json["id"] == p["id"] and r.json["name"] == "new"
    assert r.json["cost_model"]["colour"] == "0.4000" and r.json["cost_model"]["grey"] == "0.1000"
    assert r.json["cost_model"]["sizes"] == p["cost_model"]["sizes"]
    assert r.json["filters"]["max_pages"] is None and r.json["filters"]["max_copies"] == 5
    assert r.json["filters"]["grey_only"] is True
    assert (await client.get("/printers/old")).status == 404
    names = (await client.get("/printers/new/names")).json["items"]
    assert [n["name"] for n in names] == ["old", "new"] and names[-1]["until"] is None
    assert (await client.get(f"/printers/{p['id']}")).json["name"] == "new"
    listed = (await client.get("/printers")).json
    assert [x["name"] for x in listed["items"]] == ["new"]


@ensureDeferred
async def test_printer_input_is_checked(client):
    r = await client.post("/printers", {"name": "p", "filters": {"deny_document_patterns": ["([a-"]}})
    assert r.status == 400 and r.error["field"] == "filters.deny_document_patterns[0]"
    assert "regular expression" in r.error["message"]
    r = await client.post("/printers", {"name": "p", "hold_mode": "sometimes"})
    assert r.status == 400 and r.error["field"] == "hold_mode" and "none, hold, find-me" in r.error["message"]
    r = await client.post("/printers", {"name": "p", "cost_model": {"grey": 0.1}})
    assert r.status == 400 and r.error["field"] == "cost_model.grey"
    r = await client.post("/printers", {"name": "p", "cost_model": {"grey": "-0.10"}})
    assert r.status == 400 and r.error["field"] == "cost_model.grey"
    r = await client.post("/printers", {"name": "p", "cost_model": {"sizes": {"A3": {"grey": "1"}}}})
    assert r.status == 400 and r.error["field"] == "cost_model.sizes.A3.colour"
    r = await client.post("/printers", {"name": "p", "cost_model": {"sizes": {
        "A3": {"grey": "1", "colour": "2"}, "a3": {"grey": "1", "colour": "2"}}}})
    assert r.status == 400 and "same size" in r.error["message"]
    r = await client.post("/printers", {"name": "p", "filters": {"max_pages": -1}})
    assert r.status == 400 and r.error["field"] == "filters.max_pages"
    r = await client.post("/printers", {"name": "p", "filters": {"max_pagse": 1}})
    assert r.status == 400 and r.error["field"] == "filters.max_pagse"
    r = await client.post("/printers", {"name": "p", "fitlers": {}})
    assert r.status == 400 and r.error["field"] == "fitlers"
    assert (await client.get("/printers", params={"limit": "1"})).json["total"] == 0
