"""The admin JSON API, mounted at `/api/v1`: users, groups, accounts and their ledgers,
printers, quotas, the job log and job import, held jobs, API tokens, nodes, the journal
quarantine, the offline policy and the audit log, for scripts and integrations.

One module per resource, each a class of routes on the one Klein app of `_base.ApiBase`;
`AdminApi` puts them together. Routes are declared with `RouteTable`, which validates every
request against field specs (`pcnet.web._fields`, their limits the service layer's rules)
before a handler runs and generates the OpenAPI document (`GET /api/v1/openapi.json`) from the
same declarations. Handlers are thin: each calls the service layer (`pcnet.app.services`) with
the request's `Actor` and serialises the records it returns (`pcnet.web._schemas`, one
serialiser per record). Every error is answered as `{"error": {"code": ..., "message": ...}}`;
input problems are 4xx naming the field, and only bugs are 500s (logged, without request
bodies or headers, so no secret reaches the log).

Admin routes take an API token (`Authorization: Bearer`). The `/me` routes act for one user
instead: HTTP Basic with that user's username and password, checked off the reactor thread
through the server's sign-in throttle (`pcnet.app.throttle`: per address and global budgets,
no lock-out a stranger can cause); a user sees, releases and cancels only their own held jobs,
and another user's job is answered 404 like a missing one.
"""

from __future__ import annotations

from pcnet.web.api._base import API_PREFIX, API_VERSION, ApiBase, Unauthenticated
from pcnet.web.api.accounts import AccountRoutes
from pcnet.web.api.audit import AuditRoutes
from pcnet.web.api.groups import GroupRoutes
from pcnet.web.api.held_jobs import HeldJobRoutes, MeRoutes
from pcnet.web.api.jobs import JobRoutes
from pcnet.web.api.nodes import NodeRoutes
from pcnet.web.api.offline_policy import OfflinePolicyRoutes
from pcnet.web.api.printers import PrinterRoutes
from pcnet.web.api.quarantine import QuarantineRoutes
from pcnet.web.api.quotas import QuotaRoutes
from pcnet.web.api.tokens import TokenRoutes
from pcnet.web.api.users import UserRoutes

__all__ = ["API_PREFIX", "API_VERSION", "AdminApi", "Unauthenticated"]


class AdminApi(UserRoutes, GroupRoutes, AccountRoutes, PrinterRoutes, QuotaRoutes, JobRoutes,
               HeldJobRoutes, QuarantineRoutes, TokenRoutes, NodeRoutes, OfflinePolicyRoutes,
               AuditRoutes, MeRoutes, ApiBase):
    """The admin JSON API over `services` (a `pcnet.app.services.Services`):
    `AdminApi(services, clock, signin=...).mount(root)` puts it at `/api/v1`."""
