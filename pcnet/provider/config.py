"""The Print Provider's configuration: its own schema for `pcnet.config.load`.

A provider's TOML file names the node, the server it talks to (and the CA that vouches for that
server), its local files (Unix socket for the CUPS backend, spool, journal and cache directories),
its timeouts, and the sandbox and limits of its spool analysis (`[analysis]`, see
docs/spool-analysis.md "Sandbox and limits"). `etc/provider.toml` is `render_example(PROVIDER_SCHEMA)` with every key
commented. Relative paths are relative to `[provider] data_dir`, itself relative to the file.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from pcnet.config import Key, _choice, _paper_size, _positive, hidden, load, render_example
from pcnet.domain.enrolment import MAX_CODE_LENGTH
from pcnet.domain.model import DEFAULT_PAPER_SIZE, FailureMode
from pcnet.errors import ConfigError
from pcnet.spool import SANDBOX_MODES, Limits

_LIMITS = Limits()


def _client_endpoint(v):
    if not v:
        return None
    return None if v.startswith(("tcp:", "unix:")) else (
        "must be a Twisted client endpoint string such as \"tcp:host=app.example.org:port=9191\""
        " (TLS is added by pcnet: do not use tls: or ssl:)")


def _not_negative(v):
    return None if v >= 0 else "must not be negative"


def _server_list(v):
    if len(v) > 16:
        return "names at most 16 servers"
    for entry in v:
        if not isinstance(entry, str) or not entry.strip():
            return f"{entry!r} is not a server (\"HOST\", \"HOST:PORT\" or a tcp: endpoint)"
        try:
            server_address(entry, "localhost")
        except ValueError as e:
            return f"{entry!r}: {e}"
    return None


@dataclass(frozen=True)
class ServerAddress:
    """One server of the provider's list: the client `endpoint` string (without TLS, which pcnet
    adds) and the `host` name its certificate must carry."""

    endpoint: str
    host: str


def server_address(entry: str, default_host: str) -> ServerAddress:
    """`HOST`, `HOST:PORT`, `[IPV6]:PORT` or a tcp:/unix: client endpoint -> ServerAddress."""
    entry = entry.strip()
    if entry.startswith(("tcp:", "unix:")):
        return ServerAddress(entry, default_host)
    if entry.startswith(("tls:", "ssl:")):
        raise ValueError("TLS is added by pcnet: give HOST:PORT or a tcp: endpoint")
    host, port = entry, 9191
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    try:
        port = int(port)
    except ValueError:
        raise ValueError("the port must be a number") from None
    if not host or not 0 < port < 65536:
        raise ValueError("expected HOST or HOST:PORT")
    return ServerAddress(f"tcp:host={_escape(host)}:port={port}", host)


def _enrolment_code(v):
    if not v:
        return None
    if len(v) > MAX_CODE_LENGTH or not v.isascii() or not v.isprintable() or v != v.strip():
        return "is not an enrolment code (copy it exactly as `pcnet nodes invite` printed it)"
    return None


PROVIDER_SCHEMA: dict[str, dict[str, Key]] = {
    "provider": {
        "name": Key(str, "", "this print server's node name on the Application Server (empty: the host name)"),
        "data_dir": Key(str, ".", "directory for the credential, journal and caches (relative to this file)"),
        "socket": Key(str, "/run/pcnet/provider.sock",
                      "Unix socket the pcnet CUPS backend talks to (the backend's PCNET_PROVIDER_SOCKET)"),
        "spool_dir": Key(str, "/var/spool/pcnet",
                         "where the backend writes spool files (PCNET_SPOOL_DIR); a job naming a file elsewhere is refused"),
        "journal_dir": Key(str, "journal",
                           "durable journal of jobs printed while no server answered, and of held jobs (relative to data_dir)"),
        "cups_server": Key(str, "", "CUPS server: a socket path or host[:port]; empty for CUPS's default"),
        "analysis_threads": Key(int, 2, "spool files analysed at once (each in a thread)", _positive),
        "default_failure_mode": Key(str, FailureMode.PRINT_LOG_LATER.value,
                                    "failure mode of a queue the server has never described (print-log-later, print-no-log, hold)",
                                    _choice(*(m.value for m in FailureMode))),
    },
    "server": {
        "host": Key(str, "localhost", "the server's name or address, as its certificate names it"),
        "endpoint": Key(str, "", "client endpoint of the server's pcnet/1 port (empty: tcp:host=HOST:port=9191)",
                        _client_endpoint),
        "ca_cert": Key(str, "ca.pem", "the deployment CA certificate that must have signed the server's (relative to data_dir)"),
        "credential_file": Key(str, "credential",
                               "this node's secret credential; created (mode 0600) on first start (relative to data_dir)"),
        "enrolment_code": Key(str, "",
                              "the one-time code from `pcnet nodes invite NAME` on the Application Server, sent in the"
                              " first hello to enrol this node (spent once used; not needed from an auto-approve network)",
                              _enrolment_code, shown=hidden),
        "servers": Key(list, [],
                       "the servers to use, in order (fail over down the list, and back): each"
                       " \"HOST\" or \"HOST:PORT\" (port 9191; the server's certificate must name"
                       " HOST), or a client endpoint (tcp:host=...:port=...) whose certificate"
                       " must name [server] host; empty: just [server] host / endpoint",
                       _server_list),
        "failback_interval": Key((int, float), 60,
                                 "while connected to a later server of the list, seconds between"
                                 " attempts to go back to an earlier one (0: stay)", _not_negative),
        "rejected_retry": Key((int, float), 300,
                              "seconds to wait after every server rejected this node before asking"
                              " again (an administrator must approve or re-invite it)", _positive),
        "decision_timeout": Key((int, float), 10,
                                "seconds to wait for the server's decision before the printer's failure mode applies", _positive),
        "reconnect_max_delay": Key((int, float), 30, "longest wait between reconnection attempts, in seconds", _positive),
    },
    "protocol": {
        "heartbeat_interval": Key((int, float), 5, "seconds between pcnet/1 heartbeats on an idle link", _positive),
        "missed_beats": Key(int, 3, "heartbeats missed before the link is declared down", _positive),
        "max_line_length": Key(int, 1048576, "longest pcnet/1 line accepted, in bytes", _positive),
        "pending_retry": Key((int, float), 15, "seconds between hellos while this node waits for approval", _positive),
    },
    "jobs": {
        "retry_interval": Key((int, float), 30,
                              "seconds between retries of journal entries and offline holds while the link is up", _positive),
    },
    "analysis": {
        "paper_size": Key(str, DEFAULT_PAPER_SIZE,
                          "the paper size of a job whose file does not say (text, JPEG, PCL without a page size); "
                          "the print server's usual paper", _paper_size),
        "sandbox": Key(str, _LIMITS.sandbox,
                       "how Ghostscript is confined: auto (bubblewrap if it works here, else user), bwrap, or user"
                       " (an unprivileged user and -dSAFER file lists)", _choice(*SANDBOX_MODES)),
        "sandbox_user": Key(str, _LIMITS.sandbox_user,
                            "the user Ghostscript runs as in the user sandbox when the provider runs as root"),
        "work_dir": Key(str, _LIMITS.work_dir,
                        "where each job gets its private analysis directory (relative to data_dir; empty: the system temporary directory)"),
        "timeout": Key((int, float), _LIMITS.timeout,
                       "wall-clock seconds one Ghostscript run may take; a job stopped by any limit gets the documented fallback",
                       _positive),
        "cpu_seconds": Key(int, _LIMITS.cpu_seconds, "CPU seconds one Ghostscript run may use", _positive),
        "memory_limit_mb": Key(int, _LIMITS.memory_mb, "address space one Ghostscript run may use, in MiB", _positive),
        "temp_limit_mb": Key(int, _LIMITS.temp_mb,
                             "temporary space (and largest file) one Ghostscript run may write, in MiB", _positive),
        "max_unpacked_mb": Key(int, _LIMITS.max_unpacked_mb,
                               "largest size a gzip'd or PJL-wrapped job may unpack to, in MiB", _positive),
        "max_pages": Key(int, _LIMITS.max_pages,
                         "pages counted at most: a file with more is reported as max_pages + 1 (keep it at least the server's page limit)",
                         _positive),
        "max_copies": Key(int, _LIMITS.max_copies,
                          "copies a file may claim: more is reported as max_copies + 1 (keep it at least the server's copies limit)",
                          _positive),
    },
}


@dataclass(frozen=True)
class ProviderSettings:
    """The provider's configuration with paths resolved."""

    path: Path | None
    node: str
    data_dir: Path
    socket: Path
    spool_dir: Path
    journal_dir: Path
    cups_server: str | None
    analysis_threads: int
    default_failure_mode: FailureMode
    server_host: str
    server_endpoint: str
    #: The servers in the order tried: [server] servers, or the one of host / endpoint.
    servers: tuple[ServerAddress, ...]
    failback_interval: float
    rejected_retry: float
    ca_cert: Path
    credential_file: Path
    enrolment_code: str | None
    decision_timeout: float
    reconnect_max_delay: float
    heartbeat_interval: float
    missed_beats: int
    max_line_length: int
    pending_retry: float
    retry_interval: float
    analysis: Limits
    paper_size: str = DEFAULT_PAPER_SIZE


def load_settings(path: str | Path) -> ProviderSettings:
    """Load and validate a provider configuration file (a `ConfigError` naming the key if wrong)."""
    config = load(path, schema=PROVIDER_SCHEMA)
    return settings_from(config.values, config.base_dir, config.path)


def settings_from(values: dict, base_dir: Path, path: Path | None = None) -> ProviderSettings:
    p, s, proto, jobs = values["provider"], values["server"], values["protocol"], values["jobs"]
    a = values["analysis"]
    data_dir = (base_dir / p["data_dir"]).resolve()

    def at(relative: str) -> Path:
        return (data_dir / relative).resolve()

    host = s["host"]
    if not host:
        raise ConfigError(f"{path or '<config>'}: [server] host: required")
    endpoint = s["endpoint"] or f"tcp:host={_escape(host)}:port=9191"
    return ProviderSettings(
        path=path,
        node=p["name"] or socket.gethostname(),
        data_dir=data_dir,
        socket=at(p["socket"]),
        spool_dir=at(p["spool_dir"]),
        journal_dir=at(p["journal_dir"]),
        cups_server=p["cups_server"] or None,
        analysis_threads=p["analysis_threads"],
        default_failure_mode=FailureMode(p["default_failure_mode"]),
        server_host=host,
        server_endpoint=endpoint,
        servers=tuple(server_address(e, host) for e in s["servers"]) or (ServerAddress(endpoint, host),),
        failback_interval=float(s["failback_interval"]),
        rejected_retry=float(s["rejected_retry"]),
        ca_cert=at(s["ca_cert"]),
        credential_file=at(s["credential_file"]),
        enrolment_code=s["enrolment_code"] or None,
        decision_timeout=float(s["decision_timeout"]),
        reconnect_max_delay=float(s["reconnect_max_delay"]),
        heartbeat_interval=float(proto["heartbeat_interval"]),
        missed_beats=proto["missed_beats"],
        max_line_length=proto["max_line_length"],
        pending_retry=float(proto["pending_retry"]),
        retry_interval=float(jobs["retry_interval"]),
        analysis=Limits(
            timeout=float(a["timeout"]), cpu_seconds=a["cpu_seconds"], memory_mb=a["memory_limit_mb"],
            temp_mb=a["temp_limit_mb"], max_unpacked_mb=a["max_unpacked_mb"], max_pages=a["max_pages"],
            max_copies=a["max_copies"], sandbox=a["sandbox"], sandbox_user=a["sandbox_user"],
            work_dir=str(at(a["work_dir"])) if a["work_dir"] else ""),
        paper_size=a["paper_size"],
    )


def _escape(host: str) -> str:
    # Endpoint strings use ':' as a separator: an IPv6 literal's colons must be escaped.
    return host.replace(":", "\\:")


def example() -> str:
    """The text of etc/provider.toml."""
    text = render_example(PROVIDER_SCHEMA, overrides={"provider": {"name": "print01"}})
    return text.replace(
        "# pcnet configuration.",
        "# pcnet Print Provider configuration (twistd -n pcnet provider --config PATH).", 1)
