"""The OpenAPI document matches the Klein routes: every route documented, every documented
operation routed, methods and path parameters the same, and every reference resolvable."""

import json
import re

from pytest_twisted import ensureDeferred

from pcnet.web.api import API_PREFIX, AdminApi


def klein_operations() -> set[tuple[str, str]]:
    ops = set()
    for rule in AdminApi.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods:
            if method != "HEAD":          # werkzeug adds HEAD to every GET route
                ops.add((method, path))
    return ops


def documented_operations(doc) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_path_exists():
    doc = AdminApi.openapi()
    routed, documented = klein_operations(), documented_operations(doc)
    assert routed - documented == set(), "routes missing from the document"
    assert documented - routed == set(), "documented operations with no route"
    assert len(routed) > 30


def test_document_is_well_formed():
    doc = AdminApi.openapi()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": API_PREFIX}]
    assert doc["info"]["title"] and doc["info"]["version"]
    operation_ids = []
    for path, item in doc["paths"].items():
        template_params = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}
            operation_ids.append(op["operationId"])
            assert op["summary"] and op["tags"] and op["responses"]
            path_params = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
            assert path_params == template_params, (method, path)
            for p in op.get("parameters", ()):
                assert p["in"] in {"path", "query", "header"} and "schema" in p
                if p["in"] == "path":
                    assert p["required"] is True
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5][0-9][0-9]", status)
                assert "description" in response or "$ref" in response
            if method in {"post", "patch"} and "requestBody" in op:
                assert "application/json" in op["requestBody"]["content"]
            if op.get("security") != []:
                assert "401" in op["responses"]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    text = json.dumps(doc)
    for target in set(re.findall(r'"\$ref": "([^"]+)"', text)):
        node = doc
        for part in target.lstrip("#/").split("/"):
            assert part in node, f"unresolvable $ref {target}"
            node = node[part]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}


def test_request_schemas_come_from_the_field_specs():
    doc = AdminApi.openapi()
    adjust = doc["paths"]["/accounts/{account}/adjust"]["post"]
    body = adjust["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["amount"] and body["additionalProperties"] is False
    assert set(body["properties"]) == {"amount", "comment", "uuid"}
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in adjust["parameters"])
    printer = doc["paths"]["/printers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert printer["properties"]["hold_mode"]["enum"] == ["none", "hold", "find-me"]
    users = doc["paths"]["/users"]["get"]
    assert {p["name"] for p in users["parameters"]} == {"offset", "limit", "search"}


@ensureDeferred
async def test_served_document_is_the_generated_one(anonymous):
    r = await anonymous.get("/openapi.json")
    assert r.status == 200 and r.json == json.loads(json.dumps(AdminApi.openapi()))
