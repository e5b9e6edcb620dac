"""A server's Prometheus metrics (`GET /metrics`, see `pcnet.web.status`), in a registry of its
own (never the process-global one, so that tests can run many servers in one process).

- `pcnet_job_decisions_total{path, action}`: jobs decided by the job service, by the way in
  (`submit`: live jobs and imports, `offline`: printed while no server answered) and the
  outcome (`print`, `deny`, `hold`);
- `pcnet_jobs_charged_total{path}`: those of them charged (a ledger row was written);
- `pcnet_job_decision_seconds{path}`: a histogram of the time from the request to the
  recorded decision (the store's commit included);
- `pcnet_line_links{role}`: approved pcnet/1 links up now, by role (provider, site, device);
- `pcnet_http_requests_total{route, method, status}`: HTTP requests by route template
  (`/api/v1/users/<user>`, never the path itself, so the label set stays bounded), method and
  status; anything else is route `other`;
- `pcnet_db_pool_connections{state}`, `pcnet_db_waiting`: database connections in use and
  idle, and operations waiting for one (SQLite: its one writer connection and its queue);
- `pcnet_change_events_total{kind, origin}`: change events on the bus, `local` (this process
  wrote) or `other` (the watcher heard another process);
- `pcnet_build_info{version, role, node}`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

import pcnet

#: Seconds: a decision on a quiet server takes about a millisecond, a busy one tens of ms.
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LINK_ROLES = ("provider", "site", "device")


def links_up(sessions) -> dict[str, int]:
    """Approved pcnet/1 links up now, by role (every role of `LINK_ROLES`, 0 if none), from an
    `INodeSessions` (the service layer's `sessions`): what the health report and the
    `pcnet_line_links` gauge both say."""
    counts = dict.fromkeys(LINK_ROLES, 0)
    for role, _node in sessions.connected():
        counts[role] = counts.get(role, 0) + 1
    return counts


class RouteLabels:
    """Turns a request path into the route template that matched it, or "other"."""

    def __init__(self, routes: Iterable[tuple[str, str]]):
        rules, seen = [], set()
        for method, path in routes:
            if path in seen:
                continue
            seen.add(path)
            rules.append(Rule(path, endpoint=path))
        self._map = Map(rules, merge_slashes=False, strict_slashes=False)
        self._adapter = self._map.bind("pcnet")

    def route(self, path: str) -> str:
        try:
            endpoint, _ = self._adapter.match(path)
        except HTTPException:
            return "other"
        except Exception:
            return "other"
        return endpoint


class ServerMetrics:
    """The metrics of one server process. `registry` is what `GET /metrics` exposes."""

    def __init__(self, *, role: str, node: str, routes: Iterable[tuple[str, str]] = (),
                 timer=time.perf_counter):
        self.registry = CollectorRegistry(auto_describe=True)
        self.timer = timer
        self.routes = RouteLabels(routes)
        r = self.registry
        self.decisions = Counter("pcnet_job_decisions", "jobs decided, by way in and outcome",
                                 ["path", "action"], registry=r)
        self.charged = Counter("pcnet_jobs_charged", "jobs charged (a ledger row written)",
                               ["path"], registry=r)
        self.decision_seconds = Histogram(
            "pcnet_job_decision_seconds", "time from a job's request to its recorded decision",
            ["path"], buckets=DECISION_BUCKETS, registry=r)
        self.http_requests = Counter("pcnet_http_requests", "HTTP requests answered",
                                     ["route", "method", "status"], registry=r)
        self.change_events = Counter("pcnet_change_events", "change events on the bus",
                                     ["kind", "origin"], registry=r)
        Info("pcnet_build", "what this server is", registry=r).info(
            {"version": pcnet.__version__, "role": role, "node": node})
        self._links = None
        self._store = None
        r.register(_Collector(self))

    # --- what the pieces report -------------------------------------------------------------

    def job_decided(self, path: str, action: str, charged: bool, seconds: float) -> None:
        """A decision recorded by the job service (see `pcnet.app.services.jobs.JobService`)."""
        self.decisions.labels(path, action).inc()
        if charged:
            self.charged.labels(path).inc()
        self.decision_seconds.labels(path).observe(seconds)

    def http_request(self, request) -> None:
        """A finished HTTP request (the site calls this as it writes its access log line)."""
        path = request.path.decode("utf-8", "replace") if isinstance(request.path, bytes) else str(request.path)
        method = request.method.decode("ascii", "replace") if isinstance(request.method, bytes) else str(request.method)
        self.http_requests.labels(self.routes.route(path.split("?", 1)[0]),
                                  method if method in _METHODS else "other",
                                  str(request.code)).inc()

    def change_event(self, event) -> None:
        """A bus subscriber: counts change events."""
        self.change_events.labels(event.kind, "local" if event.local else "other").inc()

    def watch_links(self, sessions) -> None:
        """Count the approved pcnet/1 sessions of `sessions` (an `INodeSessions`) at each
        scrape."""
        self._links = sessions

    def watch_store(self, store) -> None:
        """Report this store's pool at each scrape (`store.pool_stats()`)."""
        self._store = store

    # --- exposition -------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Collector:
    """The gauges read at scrape time: links up, database pool use."""

    def __init__(self, metrics: ServerMetrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        m = self._metrics
        links = GaugeMetricFamily("pcnet_line_links", "approved pcnet/1 links up", labels=["role"])
        counts = links_up(m._links) if m._links is not None else dict.fromkeys(LINK_ROLES, 0)
        for role, n in sorted(counts.items()):
            links.add_metric([role], n)
        yield links
        pool_stats = getattr(m._store, "pool_stats", None)
        if pool_stats is not None:
            stats = pool_stats()
            pool = GaugeMetricFamily("pcnet_db_pool_connections",
                                     "database connections, by state", labels=["state"])
            pool.add_metric(["in_use"], stats["in_use"])
            pool.add_metric(["idle"], max(0, stats["size"] - stats["in_use"]))
            yield pool
            waiting = GaugeMetricFamily("pcnet_db_waiting",
                                        "database operations waiting for a connection")
            waiting.add_metric([], stats["waiting"])
            yield waiting
