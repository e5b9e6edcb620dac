"""Configuration: one TOML file per node, validated against a declared schema.

Every key pcnet understands is declared once in `SCHEMA` with its type, default and a line of
help; `etc/pcnet.toml` documents the same keys. An unknown section or key, a wrong type or a bad
value stops start-up with one line naming the file, the key and what is wrong (a `ConfigError`),
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pcnet.domain.model import DEFAULT_PAPER_SIZE, JobLimits, OfflinePolicy
from pcnet.errors import ConfigError


class _Required:
    """The default of a key that has none: it must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Key:
    type: type | tuple[type, ...]
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns an error message or None
    # How an error message shows the value: None for as is; keys that may hold a secret (a
    # database URL with a password, an enrolment code) give a function hiding it.
    shown: Callable[[Any], str] | None = None

    def show(self, value) -> str:
        return repr(value) if self.shown is None else self.shown(value)


def hidden(value) -> str:
    """How a secret value appears in a message: not at all."""
    return "(value not shown: it may be a secret)"


def shown_database_url(value) -> str:
    """A database URL in a message: without its password."""
    from pcnet.store import redact_url

    return repr(redact_url(value)) if isinstance(value, str) else hidden(value)


def _positive(v):
    return None if v > 0 else "must be greater than zero"


def _at_least(n):
    def check(v):
        return None if v >= n else f"must be at least {n}"
    return check


def _endpoint(v):
    return None if ":" in v else "must be a Twisted endpoint string such as \"tcp:9191\""


def _database_url(v):
    if v.startswith("sqlite:") or v.startswith("postgresql:") or v.startswith("postgres:"):
        return None
    return "must start with sqlite: or postgresql:"


def _networks(v):
    for net in v:
        if not isinstance(net, str):
            return f"{net!r} is not a network such as \"10.0.0.0/8\""
        try:
            ipaddress.ip_network(net, strict=False)
        except (ValueError, TypeError):
            return f"{net!r} is not a network such as \"10.0.0.0/8\""
    return None


def _choice(*options):
    def check(v):
        return None if v in options else f"must be one of {', '.join(options)}"
    return check


def _count(ceiling):
    def check(v):
        return None if 1 <= v <= ceiling else f"must be from 1 to {ceiling}"
    return check


def _paper_size(v):
    from pcnet.domain.rules import SIZE_NAME
    from pcnet.errors import InvalidInput

    try:
        SIZE_NAME.check(v, "paper_size")
    except InvalidInput as e:
        return e.message.split(": ", 1)[-1]
    return None


_LIMITS = JobLimits()


SCHEMA: dict[str, dict[str, Key]] = {
    "server": {
        "name": Key(str, "app", "this node's name, shown in logs and recorded as the origin of its transactions"),
        "data_dir": Key(str, ".", "directory for the database, TLS files and journals (relative to this file)"),
        "http": Key(str, "tcp:9191", "listener for plain HTTP and TLS, told apart by the first byte", _endpoint),
        "tls": Key(str, "tcp:9192", "listener for TLS only (HTTPS and pcnet/1)", _endpoint),
        "public_host": Key(str, "localhost", "host name clients use to reach this server; printed at start-up"),
        "max_connections": Key(int, 10000, "connections held at once on all listeners, from accept (TLS handshakes, HTTP and pcnet/1 alike); lowered to fit the open-files limit", _positive),
        "max_connections_per_address": Key(int, 128, "connections held at once from one IPv4 address or IPv6 /64; more are closed at accept", _positive),
        "handshake_timeout": Key((int, float), 10, "seconds a new connection has to send its first byte and finish its TLS handshake", _positive),
        "listen_backlog": Key(int, 1024, "connections the kernel queues before the server accepts them (added to tcp: listeners that set no backlog=); Twisted's 50 overflows under a flood of new connections, and every dropped SYN costs a client a second", _positive),
    },
    "http": {
        "request_timeout": Key((int, float), 30, "seconds from a request's first byte to the end of its body (never restarted by a trickle); then 408", _positive),
        "idle_timeout": Key((int, float), 15, "seconds a connection may wait for its next (or first) request", _positive),
        "max_headers": Key(int, 100, "header lines per request; more get 400", _positive),
        "max_header_bytes": Key(int, 16384, "bytes of request line and headers per request; more get 400", _at_least(1024)),
        "max_request_body": Key(int, 4194304, "bytes of request body; a larger one is refused (413) as it arrives", _at_least(1 << 20)),
        "max_request_bodies": Key(int, 67108864, "bytes of request bodies held at once, all connections together (memory and temporary files); past it 503", _at_least(1 << 20)),
    },
    "database": {
        "url": Key(str, "sqlite:///pcnet.db",
                   "sqlite:///PATH (relative to data_dir) or postgresql://USER@HOST:PORT/DBNAME"
                   " (give the password in PGPASSWORD or a PGPASSFILE rather than here)",
                   _database_url, shown=shown_database_url),
        "pool_size": Key(int, 16, "PostgreSQL connections kept open", _positive),
        "watch_interval": Key((int, float), 0.5,
                              "seconds between checks for writes by other processes (a pcnet command,"
                              " a second server) on SQLite; on PostgreSQL they are heard at once"
                              " (LISTEN/NOTIFY) and this is the delay before listening again after"
                              " the listening connection is lost", _positive),
    },
    "tls": {
        "ca_cert": Key(str, "tls/ca.pem", "the deployment CA certificate (relative to data_dir)"),
        "cert": Key(str, "tls/server.pem", "this server's certificate, signed by the CA"),
        "key": Key(str, "tls/server.key", "this server's private key"),
    },
    "protocol": {
        "heartbeat_interval": Key((int, float), 5, "seconds between pcnet/1 heartbeats on an idle link", _positive),
        "missed_beats": Key(int, 3, "heartbeats missed before a link is declared down", _at_least(2)),
        "max_line_length": Key(int, 1048576, "longest pcnet/1 line accepted, in bytes", _at_least(1024)),
        "hello_line_length": Key(int, 4096, "longest pcnet/1 line accepted before a node's hello is approved, in bytes", _at_least(1024)),
        "auth_timeout": Key((int, float), 10, "seconds a pcnet/1 connection may stay without an approved hello (after its TLS handshake); a pending node says hello again on a new connection", _positive),
        "auto_approve_networks": Key(list, [], "nodes connecting from these networks are approved without an administrator", _networks),
    },
    "signin": {
        "hashes_per_second": Key((int, float), 10, "password checks (scrypt, 35-50 ms of a core each) per second for the whole server, whoever asks", _positive),
        "concurrent_hashes": Key(int, 2, "password checks running at once", _positive),
        "address_failures": Key(int, 50, "failed sign-ins allowed from one address per failure_window (users who signed in from it before are exempt)", _positive),
        "user_failures": Key(int, 5, "failed sign-ins as one user from one address within failure_window before that pair is locked", _positive),
        "failure_window": Key((int, float), 900, "seconds over which failed sign-ins are counted", _positive),
        "lockout": Key((int, float), 300, "seconds a (user, address) pair stays locked", _positive),
        "max_tracked": Key(int, 10000, "addresses and (user, address) pairs remembered (memory bound); the least recently used are forgotten", _positive),
    },
    "quotas": {
        "check_interval": Key((int, float), 60, "seconds between checks for due quota allocations", _positive),
    },
    "jobs": {
        "hold_expiry_hours": Key((int, float), 24, "held jobs not released within this time expire", _positive),
        "expiry_check_interval": Key((int, float), 60, "seconds between checks for expired held jobs", _positive),
        "max_copies": Key(int, _LIMITS.max_copies,
                          "a job claiming more copies is denied (CUPS's own default limit)",
                          _count(JobLimits.CEILING["max_copies"])),
        "max_pages": Key(int, _LIMITS.max_pages, "a job with more pages per copy is denied",
                         _count(JobLimits.CEILING["max_pages"])),
        "max_total_pages": Key(int, _LIMITS.max_total_pages,
                               "a job of more pages x copies is denied (a day of a fast device)",
                               _count(JobLimits.CEILING["max_total_pages"])),
        "paper_size": Key(str, DEFAULT_PAPER_SIZE,
                          "the paper size of a job that does not say (an import without one); "
                          "Print Providers have their own, [analysis] paper_size",
                          _paper_size),
        "offline_policy": Key(str, OfflinePolicy.FLAG.value,
                              "a job printed while no server answered that breaks the limits or "
                              "the account rules: flag (charge nothing) or charge-at-limits",
                              _choice(*(p.value for p in OfflinePolicy))),
    },
    "metrics": {
        "allow_networks": Key(list, ["127.0.0.0/8", "::1/128"],
                              "GET /metrics answers clients from these networks without a token",
                              _networks),
        "token_file": Key(str, "",
                          "a file (relative to data_dir, mode 0600) holding a bearer token that lets"
                          " any client read GET /metrics (empty: no token, only allow_networks)"),
    },
}


class Config:
    """A validated configuration. `config["server"]["http"]`, plus path helpers."""

    def __init__(self, path: Path | None, values: dict[str, dict[str, Any]]):
        self.path = path
        self.values = values

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / self["server"]["data_dir"]).resolve()

    def data_path(self, relative: str) -> Path:
        """A path from the config, relative to the data directory unless absolute."""
        return (self.data_dir / relative).resolve()

    @property
    def job_limits(self) -> JobLimits:
        j = self["jobs"]
        return JobLimits(max_copies=j["max_copies"], max_pages=j["max_pages"],
                         max_total_pages=j["max_total_pages"])

    @property
    def database_url(self) -> str:
        url = self["database"]["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + str(self.data_path(url[len("sqlite:///"):]))
        return url


# --- the Application Server's settings, typed ---------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """[server]: who this server is and where it listens."""

    name: str
    data_dir: Path
    http: str
    tls: str
    public_host: str
    max_connections: int
    max_connections_per_address: int
    handshake_timeout: float
    listen_backlog: int


@dataclass(frozen=True)
class HttpSettings:
    """[http]: the deadlines and size limits of every HTTP request (pcnet.web.site)."""

    request_timeout: float
    idle_timeout: float
    max_headers: int
    max_header_bytes: int
    max_request_body: int
    max_request_bodies: int


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: `url` with a relative SQLite path resolved against the data directory."""

    url: str
    pool_size: int
    watch_interval: float


@dataclass(frozen=True)
class TlsSettings:
    """[tls]: the deployment CA and this server's certificate and key, as absolute paths."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class ProtocolSettings:
    """[protocol]: the pcnet/1 server end (`line`, a `pcnet.net.line.LineConfig`) and the
    networks whose nodes enrol without an administrator."""

    line: Any
    auto_approve_networks: tuple[str, ...]


@dataclass(frozen=True)
class JobSettings:
    """[jobs]: the job limits, the offline policy, held-job expiry and the paper size of a
    job that does not say."""

    limits: JobLimits
    offline_policy: OfflinePolicy
    hold_expiry_hours: float
    expiry_check_interval: float
    paper_size: str = DEFAULT_PAPER_SIZE


@dataclass(frozen=True)
class MetricsSettings:
    """[metrics]: who may read GET /metrics: clients from `allow_networks`, or any client with
    the bearer token held in `token_file` (None: no token)."""

    allow_networks: tuple[str, ...]
    token_file: Path | None


@dataclass(frozen=True)
class AppSettings:
    """The Application Server's whole configuration, read and checked once (`load_settings`).

    Sections are typed objects so that every piece takes the section it needs (a Site Server,
    built from the same pieces, has the same `server`, `http`, `database`, `tls`, `protocol`
    and `signin` sections). `signin` is a `pcnet.app.throttle.SignInPolicy`."""

    path: Path | None
    server: ServerSettings
    http: HttpSettings
    database: DatabaseSettings
    tls: TlsSettings
    protocol: ProtocolSettings
    signin: Any
    quota_check_interval: float
    jobs: JobSettings
    metrics: MetricsSettings


def app_settings(cfg: Config) -> AppSettings:
    """The typed settings of a validated configuration (a `ConfigError` naming the section if
    a combination of values is refused)."""
    from pcnet.app.throttle import SignInPolicy
    from pcnet.net.line import LineConfig

    where = str(cfg.path) if cfg.path is not None else "<config>"
    srv, h, db, tls, p = cfg["server"], cfg["http"], cfg["database"], cfg["tls"], cfg["protocol"]
    sign, jobs, metrics = cfg["signin"], cfg["jobs"], cfg["metrics"]
    try:
        line = LineConfig(max_line_length=p["max_line_length"],
                          heartbeat_interval=float(p["heartbeat_interval"]),
                          missed_beats=p["missed_beats"], hello_line_length=p["hello_line_length"],
                          auth_timeout=float(p["auth_timeout"]))
    except ValueError as e:
        raise ConfigError(f"{where}: [protocol] {e}") from None
    try:
        signin = SignInPolicy(
            hashes_per_second=float(sign["hashes_per_second"]),
            concurrent_hashes=sign["concurrent_hashes"], address_failures=sign["address_failures"],
            user_failures=sign["user_failures"], failure_window=float(sign["failure_window"]),
            lockout=float(sign["lockout"]), max_tracked=sign["max_tracked"])
    except ValueError as e:
        raise ConfigError(f"{where}: [signin] {e}") from None
    return AppSettings(
        path=cfg.path,
        server=ServerSettings(
            name=srv["name"], data_dir=cfg.data_dir, http=srv["http"], tls=srv["tls"],
            public_host=srv["public_host"], max_connections=srv["max_connections"],
            max_connections_per_address=srv["max_connections_per_address"],
            handshake_timeout=float(srv["handshake_timeout"]),
            listen_backlog=srv["listen_backlog"]),
        http=HttpSettings(
            request_timeout=float(h["request_timeout"]), idle_timeout=float(h["idle_timeout"]),
            max_headers=h["max_headers"], max_header_bytes=h["max_header_bytes"],
            max_request_body=h["max_request_body"], max_request_bodies=h["max_request_bodies"]),
        database=DatabaseSettings(url=cfg.database_url, pool_size=db["pool_size"],
                                  watch_interval=float(db["watch_interval"])),
        tls=TlsSettings(ca_cert=cfg.data_path(tls["ca_cert"]), cert=cfg.data_path(tls["cert"]),
                        key=cfg.data_path(tls["key"])),
        protocol=ProtocolSettings(line=line,
                                  auto_approve_networks=tuple(p["auto_approve_networks"])),
        signin=signin,
        quota_check_interval=float(cfg["quotas"]["check_interval"]),
        jobs=JobSettings(limits=cfg.job_limits, offline_policy=OfflinePolicy(jobs["offline_policy"]),
                         hold_expiry_hours=float(jobs["hold_expiry_hours"]),
                         expiry_check_interval=float(jobs["expiry_check_interval"]),
                         paper_size=jobs["paper_size"]),
        metrics=MetricsSettings(
            allow_networks=tuple(metrics["allow_networks"]),
            token_file=cfg.data_path(metrics["token_file"]) if metrics["token_file"] else None),
    )


def load_settings(path: str | Path) -> AppSettings:
    """Read, validate and type an Application Server configuration file, once."""
    return app_settings(load(path))


def parse(text: str, path: Path | None = None, schema=SCHEMA) -> Config:
    where = str(path) if path is not None else "<config>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    values: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        if section not in schema:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(schema)})")
        if not isinstance(keys, dict):
            raise ConfigError(f"{where}: {section} must be a [section]")
    for section, keys in schema.items():
        given = raw.get(section, {})
        out = values[section] = {}
        for name in given:
            if name not in keys:
                raise ConfigError(f"{where}: [{section}] unknown key {name!r} (known: {', '.join(keys)})")
        for name, key in keys.items():
            out[name] = checked_value(f"{where}: [{section}] {name}", key, given.get(name, key.default))
    return Config(path, values)


def checked_value(label: str, key: Key, value):
    """`value` if it has the key's type and passes its check, else a `ConfigError` starting with
    `label` (which names the file and the key). Shared by the server's files and the settings of
    device drivers (pcnet.devices)."""
    if value is REQUIRED:
        raise ConfigError(f"{label}: required")
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{label}: expected {expected}, got {key.show(value)}")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"{label}: {key.show(value)} {problem}")
    return value


def load(path: str | Path, schema=SCHEMA) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse(text, path.resolve(), schema)


def render_example(schema=SCHEMA, overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """A commented TOML file with every key: the example in etc/ and what `pcnet init` writes."""
    overrides = overrides or {}
    lines = ["# pcnet configuration. Every key is optional; the values shown are the defaults.", ""]
    for section, keys in schema.items():
        lines.append(f"[{section}]")
        for name, key in keys.items():
            value = overrides.get(section, {}).get(name, key.default)
            lines.append(f"# {key.help}")
            lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
