"""The Application Server's shape: typed settings read once, a tree of named services in which
nothing listens before the store has started, change events that drive the job path's cache
(this process's and other processes'), the health report and the metrics. In memory: the real
store answering at once (`tests.fakes.store`), `MemoryReactorClock`, `StubTreq`."""

from __future__ import annotations

from decimal import Decimal

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet.testing import MemoryReactorClock

from pcnet import config as configlib
from pcnet.app.events import ANY, KINDS, ChangeBus, ChangeEvent
from pcnet.app.metrics import ServerMetrics
from pcnet.app.service import ApplicationServer
from pcnet.app.services import Services
from pcnet.app.watch import events_for
from pcnet.domain.model import CostModel, JobRequest
from pcnet.errors import ConfigError, StoreUnavailable
from pcnet.store import SchemaStatus
from pcnet.store._watch import StoreChange
from tests.fakes.store import GatedStore, inline_store
from tests.support.clock import clock_at

D = Decimal


def tls_options(tmp_path):
    from pcnet.net.tls import TLSFiles, server_tls_options

    files = TLSFiles(tmp_path / "tls")
    files.ensure(["localhost"])
    return server_tls_options((tmp_path / "tls" / "server.pem").read_bytes(),
                              (tmp_path / "tls" / "server.key").read_bytes(),
                              (tmp_path / "tls" / "ca.pem").read_bytes())


CONFIG = """
[server]
name = "app-7"
http = "tcp:9191:interface=127.0.0.1"
tls = "tcp:9192"
[database]
watch_interval = 0.25
[metrics]
allow_networks = ["10.0.0.0/8"]
"""


def server(tmp_path, store=None, text=CONFIG, **kw):
    reactor = MemoryReactorClock()
    cfg = configlib.parse(text, tmp_path / "pcnet.toml")
    app = ApplicationServer(configlib.app_settings(cfg), reactor, store or GatedStore(),
                            tls_options=tls_options(tmp_path), **kw)
    return app, reactor


def test_settings_are_one_typed_object_with_paths_resolved(tmp_path):
    cfg = configlib.parse(CONFIG + "[tls]\ncert = 'x/cert.pem'\n", tmp_path / "pcnet.toml")
    s = configlib.app_settings(cfg)
    assert s.server.name == "app-7" and s.server.http == "tcp:9191:interface=127.0.0.1"
    assert s.database.watch_interval == 0.25
    assert s.database.url == f"sqlite:///{tmp_path}/pcnet.db"
    assert s.tls.cert == tmp_path / "x" / "cert.pem"
    assert s.protocol.line.detection_time == 15
    assert s.signin.hashes_per_second == 10
    assert s.metrics.allow_networks == ("10.0.0.0/8",) and s.metrics.token_file is None


def test_a_refused_combination_of_values_names_the_file_and_section(tmp_path):
    with pytest.raises(ConfigError, match=r"pcnet.toml: \[protocol\] missed_beats"):
        configlib.app_settings(configlib.parse("[protocol]\nmissed_beats = 1\n", tmp_path / "pcnet.toml"))


def test_the_service_tree_is_named_pieces_in_start_order(tmp_path):
    app, _ = server(tmp_path)
    assert [s.name for s in app] == ["store", "serving"]
    serving = app.getServiceNamed("serving")
    assert [s.name for s in serving] == ["connection-limits", "change-watcher", "quotas",
                                         "hold-expiry", "http", "tls"]
    assert all(isinstance(serving.getServiceNamed(n), StreamServerEndpointService)
               for n in ("http", "tls"))
    assert all(isinstance(serving.getServiceNamed(n), TimerService) for n in ("quotas", "hold-expiry"))
    assert app.line_factory() is app.line and app.web_root() is app.root


def test_nothing_listens_or_watches_before_the_store_has_started(tmp_path):
    store = GatedStore()
    app, reactor = server(tmp_path, store)
    app.privilegedStartService()
    app.startService()
    assert reactor.tcpServers == [] and store.listeners == []
    assert not app.ready.called
    store.starting.callback([4, 5])
    ports = sorted(port for port, *_ in reactor.tcpServers)
    assert ports == [9191, 9192]
    assert store.listeners and store.listeners[0].connected
    assert app.ready.called
    backlog = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
    assert backlog == {9191: 1024, 9192: 1024}
    d = app.stopService()
    assert store.stopped and not store.listeners[0].connected
    return d


def test_a_store_that_cannot_start_stops_start_up_with_one_line(tmp_path):
    store = GatedStore()
    app, reactor = server(tmp_path, store)
    logged = []
    from twisted.logger import globalLogPublisher

    globalLogPublisher.addObserver(logged.append)
    try:
        app.startService()
        store.starting.errback(StoreUnavailable("cannot connect to PostgreSQL at db:5432/pcnet: refused"))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert reactor.tcpServers == []
    lines = [e for e in logged if e.get("log_level") and e["log_level"].name == "critical"]
    assert len(lines) == 1 and "cannot connect to PostgreSQL" in lines[0]["message"]
    assert "log_failure" not in lines[0]
    assert app.ready.called and app.health.state == "unavailable"


# --- change events drive the job path's cache ---------------------------------------------------


async def charge_one(jobs, printer_id):
    decision, _ = await jobs.submit(JobRequest(username="amy", printer_id=printer_id, pages=1))
    return decision.cost


def in_memory():
    """A clock and the real store on it, answering at once."""
    clock = clock_at(1_800_000_000)
    return clock, inline_store(clock)


@pytest_twisted.ensureDeferred
async def test_a_printer_change_event_reaches_the_next_charge_local_or_from_another_process():
    clock, store = in_memory()
    await store.create_user("amy", initial_balance=D(10), restricted=False)
    printer = await store.create_printer("lab", cost_model=CostModel(grey=D("0.10")))
    bus = ChangeBus()
    jobs = Services(store, clock, bus).jobs
    assert await charge_one(jobs, printer.id) == D("0.10")
    # Another writer changes the price behind the cache's back: still the cached price...
    await store.update_printer(printer.id, cost_model=CostModel(grey=D("0.30")))
    assert await charge_one(jobs, printer.id) == D("0.10")
    # ...until the watcher publishes what it heard.
    bus.publish_all(events_for([StoreChange("printers", "update", str(printer.id), "lab")]))
    assert await charge_one(jobs, printer.id) == D("0.30")
    await store.update_printer(printer.id, cost_model=CostModel(grey=D("0.05")))
    bus.publish(ChangeEvent("printer", printer.id))   # this process's service layer
    assert await charge_one(jobs, printer.id) == D("0.05")


@pytest_twisted.ensureDeferred
async def test_user_and_account_events_forget_by_name_id_or_everything():
    clock, store = in_memory()
    user = await store.create_user("amy", initial_balance=D(10), restricted=False)
    jobs = Services(store, clock).jobs
    d = jobs.directory
    await d.user("amy")
    await d.account(user.personal_account_id)
    d.changed(ChangeEvent("user", user.id, local=False))        # by id only (a link table)
    assert "amy" not in d._users
    await d.user("amy")
    d.changed(ChangeEvent("user", ANY, local=False))
    assert d._users == {}
    d.changed(ChangeEvent("account", user.personal_account_id, local=False))
    assert d._accounts == {}


@pytest_twisted.ensureDeferred
async def test_the_job_services_own_charge_keeps_the_cached_balance_any_other_account_event_forgets():
    """One subscriber follows the bus for the job path's cache. The `account` event of a charge
    the job service itself wrote keeps the balance it just cached (no read back per job); any
    other account event forgets it: a local one (an adjustment), and one heard from another
    process even while this process is publishing a charge of the same account."""
    clock, store = in_memory()
    user = await store.create_user("amy", initial_balance=D(10), restricted=False)
    printer = await store.create_printer("lab", cost_model=CostModel(grey=D("0.10")))
    bus = ChangeBus()
    heard = []
    bus.subscribe(heard.append, kinds=["account"])
    jobs = Services(store, clock, bus).jobs
    account = user.personal_account_id
    await charge_one(jobs, printer.id)
    assert [e.id for e in heard] == [account]          # the charge was published...
    assert jobs.directory._accounts[account][1].balance == D("9.90")   # ...and the balance kept
    reads = []
    real_get = store.get_account
    store.get_account = lambda i: (reads.append(i), real_get(i))[1]
    await charge_one(jobs, printer.id)
    assert reads == []                                 # the next job read no account
    bus.publish(ChangeEvent("account", account))       # e.g. an administrator's adjustment
    assert account not in jobs.directory._accounts
    await charge_one(jobs, printer.id)
    assert reads == [account]
    jobs.charging = account                            # publishing its own charge, when...
    bus.publish(ChangeEvent("account", account, local=False))   # ...another server's top-up lands
    assert account not in jobs.directory._accounts
    jobs.charging = None
    await charge_one(jobs, printer.id)
    bus.publish(ChangeEvent("account", ANY))           # "some account changed": forget them all
    assert jobs.directory._accounts == {}


def test_what_the_watcher_hears_becomes_events_of_the_right_kind():
    events = events_for([
        StoreChange("printers", "update", "7", "lab"), StoreChange("users", "insert", "3", "zoe"),
        StoreChange("cards", "delete", "C-1"), StoreChange("group_members", "insert", "2,3"),
        StoreChange("accounts", "update", "12", "zoe"), StoreChange("jobs", "update", "u-1"),
        StoreChange("somebody_elses_table", "update", "1")])
    assert [(e.kind, e.id, e.op, e.name, e.local) for e in events] == [
        ("printer", 7, "update", "lab", False), ("user", 3, "create", "zoe", False),
        ("card", "C-1", "delete", None, False), ("group_member", "2,3", "create", None, False),
        ("account", 12, "update", "zoe", False), ("job", "u-1", "update", None, False)]
    unknown = events_for(None)
    assert {e.kind for e in unknown} == KINDS and all(e.id is ANY for e in unknown)


def test_the_server_forgets_its_cache_when_its_watcher_hears_another_writer(tmp_path):
    store = GatedStore()
    app, _ = server(tmp_path, store)
    app.startService()
    store.starting.callback([])
    cached = app.jobs.directory
    cached._printers[4] = object()
    store.listeners[0].deliver([StoreChange("printers", "update", "4", "p4")])
    assert 4 not in cached._printers
    cached._printers[5] = object()
    store.listeners[0].deliver(None)
    assert cached._printers == {}
    return app.stopService()


# --- health and metrics over HTTP ----------------------------------------------------------


async def get(app, path, **kw):
    stub = StubTreq(app.root)
    response = await stub.get(f"http://pcnet.test{path}", **kw)
    return response.code, await response.content(), response.headers


@pytest_twisted.ensureDeferred
async def test_health_is_503_while_starting_200_once_serving_and_503_on_an_old_schema(tmp_path):
    import json

    store = GatedStore()
    app, _ = server(tmp_path, store)
    app.startService()
    code, body, _ = await get(app, "/api/health")
    assert code == 503 and json.loads(body)["status"] == "starting"
    store.starting.callback([])
    code, body, _ = await get(app, "/api/health")
    report = json.loads(body)
    assert code == 200 and report["status"] == "ok"
    assert report["role"] == "app" and report["node"] == "app-7"
    assert report["database"] == {"engine": "sqlite", "reachable": True, "schema_version": 5,
                                  "schema_latest": 5, "migrations_current": True, "ok": True}
    assert report["links"] == {"provider": 0, "site": 0, "device": 0}
    assert report["changes"] == {"watching": "fake", "connected": True}
    # Links are the service layer's node sessions: what health, metrics and pushes all see.
    from tests.fakes import ProviderSession

    app.line.sessions[("provider", "print01")] = ProviderSession("print01")
    app.line.sessions[("site", "north")] = gone = ProviderSession("north", role="site")
    gone.lose()
    code, body, _ = await get(app, "/api/health")
    assert json.loads(body)["links"] == {"provider": 1, "site": 0, "device": 0}
    assert app.service_layer.nodes.connected() == [("provider", "print01")]
    metrics, _ = app.metrics.exposition()
    assert b'pcnet_line_links{role="provider"} 1.0' in metrics
    del app.line.sessions[("provider", "print01")], app.line.sessions[("site", "north")]
    store.schema = SchemaStatus(4, 5, False)
    code, body, _ = await get(app, "/api/health")
    assert code == 503 and json.loads(body)["status"] == "unavailable"
    store.schema = StoreUnavailable("gone")
    code, body, _ = await get(app, "/api/health")
    assert code == 503 and json.loads(body)["database"]["reachable"] is False
    await app.stopService()


@pytest_twisted.ensureDeferred
async def test_the_index_pages_are_json_and_point_at_the_openapi_document(tmp_path):
    import json

    app, _ = server(tmp_path)
    for path in ("/", "/api", "/api/"):
        code, body, headers = await get(app, path)
        assert code == 200, path
        assert headers.getRawHeaders("content-type")[0].startswith("application/json")
        assert json.loads(body)["openapi"] == "/api/v1/openapi.json"
    code, body, _ = await get(app, "/no/such/thing")
    assert code == 404 and json.loads(body)["error"]["code"] == "not_found"
    code, body, _ = await get(app, "/api/v1/openapi.json")
    assert code == 200 and json.loads(body)["openapi"].startswith("3.")


@pytest_twisted.ensureDeferred
async def test_metrics_answer_allowed_networks_or_the_token_and_no_one_else(tmp_path):
    app, _ = server(tmp_path, metrics_token="s3cret-token-for-prometheus")
    code, _, headers = await get(app, "/metrics")      # StubTreq's client is 127.0.0.1
    assert code == 401 and headers.getRawHeaders("www-authenticate")
    code, _, _ = await get(app, "/metrics", headers={"Authorization": "Bearer wrong"})
    assert code == 401
    code, body, headers = await get(app, "/metrics",
                                    headers={"Authorization": "Bearer s3cret-token-for-prometheus"})
    assert code == 200 and headers.getRawHeaders("content-type")[0].startswith("text/plain")
    assert b'pcnet_build_info{node="app-7",role="app",version="0.1.0"} 1.0' in body
    assert b'pcnet_db_pool_connections{state="in_use"} 1.0' in body
    assert b"pcnet_db_waiting 2.0" in body
    assert b"s3cret" not in body
    open_app, _ = server(tmp_path, text=CONFIG.replace('["10.0.0.0/8"]', '["127.0.0.0/8"]'))
    code, _, _ = await get(open_app, "/metrics")
    assert code == 200
    closed_app, _ = server(tmp_path)
    code, _, _ = await get(closed_app, "/metrics")
    assert code == 403


@pytest_twisted.ensureDeferred
async def test_decisions_and_http_requests_are_counted_by_route_template_not_path():
    clock, store = in_memory()
    await store.create_user("amy", initial_balance=D(1), restricted=True)
    printer = await store.create_printer("lab", cost_model=CostModel(grey=D("0.40")))
    metrics = ServerMetrics(role="app", node="a", routes=[("GET", "/api/v1/users/<user>")])
    jobs = Services(store, clock, metrics=metrics).jobs
    for _ in range(3):
        await charge_one(jobs, printer.id)    # 0.40, 0.40, then denied (0.20 left)

    class Request:
        def __init__(self, path, code, method=b"GET"):
            self.path, self.code, self.method = path, code, method

    metrics.http_request(Request(b"/api/v1/users/alice", 200))
    metrics.http_request(Request(b"/api/v1/users/bob", 404))
    metrics.http_request(Request(b"/wp-admin/login.php", 404, b"BREW"))
    body, _ = metrics.exposition()
    text = body.decode()
    assert 'pcnet_job_decisions_total{action="print",path="submit"} 2.0' in text
    assert 'pcnet_job_decisions_total{action="deny",path="submit"} 1.0' in text
    assert 'pcnet_jobs_charged_total{path="submit"} 2.0' in text
    assert 'pcnet_job_decision_seconds_count{path="submit"} 3.0' in text
    assert 'pcnet_http_requests_total{method="GET",route="/api/v1/users/<user>",status="200"} 1.0' in text
    assert 'pcnet_http_requests_total{method="GET",route="/api/v1/users/<user>",status="404"} 1.0' in text
    assert 'pcnet_http_requests_total{method="other",route="other",status="404"} 1.0' in text
    assert "alice" not in text and "wp-admin" not in text


def test_the_metrics_token_file_is_read_once_and_must_hold_a_real_token(tmp_path):
    from pcnet.app.service import read_metrics_token

    def settings(name):
        return configlib.app_settings(configlib.parse(f'[metrics]\ntoken_file = "{name}"\n',
                                                      tmp_path / "pcnet.toml"))

    assert read_metrics_token(configlib.app_settings(configlib.parse("", tmp_path / "pcnet.toml"))) is None
    with pytest.raises(ConfigError, match=r"\[metrics\] token_file: cannot read"):
        read_metrics_token(settings("missing"))
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        read_metrics_token(settings("short"))
    (tmp_path / "good").write_text("0123456789abcdef-token\n")
    (tmp_path / "good").chmod(0o600)
    assert read_metrics_token(settings("good")) == "0123456789abcdef-token"
