"""The OpenAPI 3.1 document of the admin API, generated from its declared routes.

Parameters and request bodies come from the same `Field` specs that validate requests, replies
from the schemas next to the serialisers (`_schemas`), so the document describes what the code
does rather than what someone remembered to write down.
"""

from __future__ import annotations

from pcnet.web._routes import Route
from pcnet.web._schemas import SCHEMAS, ref

_ERROR_RESPONSES = {
    400: ("BadRequest", "invalid input; the message (and `field`) names the field at fault"),
    401: ("Unauthorized", ("no bearer token, or an unknown one (/me routes: no HTTP Basic "
                           "credentials, or a wrong username or password, or a disabled user)")),
    403: ("Forbidden", "the token may not use the API"),
    404: ("NotFound", "no such route or record"),
    405: ("MethodNotAllowed", "the route exists but not with this method"),
    409: ("Conflict", "a duplicate name, a reused idempotency key, or insufficient funds"),
    413: ("PayloadTooLarge", "the request body is over the size limit"),
    415: ("UnsupportedMediaType", "the request body is not application/json"),
    429: ("TooManyRequests", "too many failed sign-ins from this address (or as this user from it), or too "
               "many sign-ins being checked at once; retry after `Retry-After` seconds"),
    500: ("InternalError", "a bug; logged on the server"),
    503: ("StoreUnavailable", "the database cannot be reached (releasing a held job: its print server is not connected)"),
}


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": ref("Error")}}}


def _parameter(name: str, where: str, spec, required: bool) -> dict:
    out = {"name": name, "in": where, "required": required, "schema": spec.text_schema()}
    if spec.description:
        out["description"] = spec.description
    return out


def operation(route: Route) -> dict:
    op: dict = {"operationId": route.endpoint, "summary": route.summary, "tags": [route.tag]}
    if route.description:
        op["description"] = " ".join(route.description.split())
    params = [_parameter(n, "path", s, True) for n, s in route.params.items()]
    params += [_parameter(n, "query", s, s.required) for n, s in route.query.items()]
    params += [_parameter(n, "header", s, s.required) for n, s in route.headers.items()]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": any(f.required for f in route.body.fields.values()),
            "content": {"application/json": {"schema": route.body.schema()}},
        }
    responses: dict = {}
    if route.response is None:
        responses[str(route.status)] = {"description": "done; no content"}
    else:
        responses[str(route.status)] = {
            "description": "success",
            "content": {"application/json": {"schema": route.response}},
        }
    # Any route refuses unknown query parameters (and a body where it takes none) with a 400.
    codes = set(route.errors) | {400, 500}
    if route.auth and route.scheme == "basic":
        codes |= {401, 429, 503}
    elif route.auth:
        codes |= {401, 403, 503}
    if route.body is not None:
        codes |= {400, 413, 415}
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[code][0]}"}
    op["responses"] = responses
    if not route.auth:
        op["security"] = []
    elif route.scheme == "basic":
        op["security"] = [{"basic": []}]
    return op


def openapi_document(routes: list[Route], *, title: str, version: str, description: str,
                     server_url: str) -> dict:
    paths: dict = {}
    for route in routes:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation(route)
    tags = []
    for route in routes:
        if route.tag not in tags:
            tags.append(route.tag)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": server_url}],
        "tags": [{"name": t} for t in tags],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": dict(SCHEMAS),
            "responses": {name: _error_response(text) for name, text in _ERROR_RESPONSES.values()},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "an API token from `pcnet token create` or POST /tokens",
            }, "basic": {
                "type": "http", "scheme": "basic",
                "description": "a user's username and password (UTF-8); only the /me routes, "
                               "which act for that user",
            }},
        },
    }
