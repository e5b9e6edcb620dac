"""The small resources around the admin API: `/`, `/api`, `/api/health` and `/metrics`.

- `GET /` and `GET /api` answer a JSON index (what this server is, where the API and its
  OpenAPI document are), not Twisted's HTML error pages; any other path outside `/api/v1`
  gets pcnet's JSON 404. (The web console will own `/`.)
- `GET /api/health` needs no token and says nothing secret: the report of `pcnet.app.health`,
  HTTP 200 when the server should get traffic and 503 when not (for a load balancer's check).
- `GET /metrics` is the Prometheus text format (`pcnet.app.metrics`). It answers clients from
  `[metrics] allow_networks` (loopback by default), and any client sending
  `Authorization: Bearer <token>` with the token of `[metrics] token_file`; others get 403
  (or 401 with a challenge when a token is configured).
"""

from __future__ import annotations

import hmac

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

import pcnet
from pcnet.net.registry import Networks
from pcnet.web._routes import error_reply, json_reply, request_path

log = Logger(namespace="pcnet.web.status")

OPENAPI = "/api/v1/openapi.json"


class JsonResource(Resource):
    """A resource that answers GET (and HEAD) with `body()` as JSON; unknown children and
    other methods get pcnet's JSON errors, never Twisted's HTML pages."""

    def __init__(self, body=None):
        super().__init__()
        self._body = body

    def getChild(self, path, request):
        if path == b"" and self._body is not None:
            return self   # a trailing slash
        return _NotFound()

    def render_GET(self, request):
        if self._body is None:
            return error_reply(request, 404, "not_found", f"no such resource: {request_path(request)}")
        return json_reply(request, 200, self._body())

    def render_HEAD(self, request):
        return self.render_GET(request)

    def render(self, request):
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return error_reply(request, 405, "method_not_allowed",
                          f"{request.method.decode('ascii', 'replace')} is not allowed here; use GET")
        return super().render(request)


class _NotFound(Resource):
    isLeaf = True

    def render(self, request):
        return error_reply(request, 404, "not_found", f"no such resource: {request_path(request)}")



class HealthResource(JsonResource):
    """`GET /api/health`: the health report, 200 or 503."""

    isLeaf = True

    def __init__(self, health):
        super().__init__()
        self.health = health

    def render_GET(self, request):
        d = self.health.report()

        def answer(result):
            status, body = result
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(json_reply(request, status, body))
                request.finish()

        def failed(failure):
            log.failure("health report failed", failure)
            answer((503, {"status": "unavailable", "error": "internal"}))

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET


class MetricsResource(JsonResource):
    """`GET /metrics` for allowed networks or the bearer token (see the module's doc)."""

    isLeaf = True

    def __init__(self, metrics, *, allow_networks=(), token: str | None = None):
        super().__init__()
        self.metrics = metrics
        self.networks = Networks(allow_networks)
        self.token = token

    def allowed(self, request) -> bool:
        if self.token is not None:
            header = request.getHeader(b"authorization") or b""
            scheme, _, given = header.partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token.encode()):
                return True
        return self.networks.admits(request.getClientAddress())

    def render_GET(self, request):
        if not self.allowed(request):
            if self.token is not None:
                request.setHeader(b"www-authenticate", b'Bearer realm="pcnet metrics"')
                return error_reply(request, 401, "unauthorized",
                              "send 'Authorization: Bearer <token>' with the [metrics] token")
            return error_reply(request, 403, "forbidden",
                          "metrics are served to [metrics] allow_networks only")
        body, content_type = self.metrics.exposition()
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return body


def status_root(*, health, metrics, allow_networks=(), token=None, role: str = "app") -> Resource:
    """A web root answering `/` itself, with `/api`, `/api/health` and `/metrics` under it.
    Mount the admin API on it afterwards (it goes under the `/api` made here)."""
    index = {"name": "pcnet", "role": role, "version": pcnet.__version__, "api": "/api/v1",
             "openapi": OPENAPI, "health": "/api/health"}
    root = JsonResource(lambda: index)
    api = JsonResource(lambda: {"versions": {"v1": "/api/v1"}, "current": "/api/v1",
                                "openapi": OPENAPI, "health": "/api/health"})
    root.putChild(b"api", api)
    api.putChild(b"health", HealthResource(health))
    root.putChild(b"metrics", MetricsResource(metrics, allow_networks=allow_networks, token=token))
    return root
