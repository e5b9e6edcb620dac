"""pcnet's web interfaces: the admin JSON API (`pcnet.web.api.AdminApi`, mounted at `/api/v1`).

Klein app classes with their dependencies (store, job service, clock) passed to `__init__`;
request validation and the OpenAPI document come from declared field specs (`_fields`,
`_routes`, `_openapi`), the JSON shapes of records from `_schemas`.
"""
