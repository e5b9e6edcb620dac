"""A real pcnet deployment for end-to-end tests: Application Servers, Print Providers and print
servers, each in its own process, on loopback or each on its own host (hosts.py).

- `AppServer`: `pcnet init` a data directory (SQLite by default, or a `database` URL; its own
  CA; an admin API token), then `twistd -n pcnet app --config ...` as a managed child; `stop()`
  and `start()` again simulate an outage, `kill()` a crash. `api()` calls the admin JSON API
  with the token.
- `ProviderProcess`: `twistd -n pcnet provider --config provider.toml` pointed at that server
  and at a private cupsd (cups_rig.py), with the enrolment code an administrator issued.
- `PrintServer`: a print server host: a private cupsd with the pcnet backend, one AppSocket fake
  printer per queue (each queue wrapped by pcnet), and its Print Provider.
- `pcnet1_hello`: one hello over real TLS, as a stranger on the network would say it.

With `host=None` everything listens on 127.0.0.1 of this machine; with a `hosts.Host`, the
command runs inside that host, listens on every address of it, and the certificate and the
provider's config name the host's address. Every wait is bounded; every process is stopped by
PID and process group.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cups_rig import CupsRig, free_port, wait_until
from hosts import Process

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TWISTD = str(Path(PYTHON).with_name("twistd"))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _twistd(role: str, config: Path) -> list[str]:
    return [TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "pcnet", role, "--config", str(config)]


def _process(name: str, argv: list[str], log_path: Path, cwd: Path, host) -> Process:
    if host is not None:
        return host.spawn(name, argv, env=_env(), cwd=cwd, log_path=log_path, start=False)
    return Process(name, argv, log_path, env=_env(), cwd=cwd)


class ApiError(Exception):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class AppServer:
    """One Application Server process, on loopback or inside a `host`. `database`: a database
    URL for `pcnet init` (default: SQLite in the data directory). `join`: another AppServer whose
    database, CA, certificate and API token this one shares (a second server of an HA pair: its
    own name and ports; no `pcnet init`, as docs/ha.md says)."""

    def __init__(self, root: Path, *, host=None, database: str | None = None,
                 expiry_interval: float = 1.0,
                 auto_approve_networks: tuple[str, ...] = ("127.0.0.0/8",),
                 name: str = "app", join: AppServer | None = None):
        self.root = Path(root)
        self.host = host
        self.name = name
        self.data_dir = self.root / name
        self.address = host.ip if host is not None else "127.0.0.1"
        #: The name clients verify the server's certificate against.
        self.tls_name = host.ip if host is not None else "localhost"
        port = host.free_port if host is not None else free_port
        self.http_port = port()
        self.tls_port = port()
        while self.tls_port == self.http_port:
            self.tls_port = port()
        self.expiry_interval = expiry_interval
        self.log_path = self.root / f"{name}.log"
        self.config = self.data_dir / "pcnet.toml"
        self.ca_cert = self.data_dir / "tls" / "ca.pem"
        if join is not None:
            import shutil

            self.data_dir.mkdir(parents=True, mode=0o700)
            shutil.copytree(join.data_dir / "tls", self.data_dir / "tls")
            text = join.config.read_text()
            for theirs, ours in ((join.http_port, self.http_port), (join.tls_port, self.tls_port)):
                text = re.sub(rf"\btcp:{theirs}\b", f"tcp:{ours}", text)
            text = text.replace(f'name = "{join.name}"', f'name = "{name}"', 1)
            self.config.write_text(text)
            self.config.chmod(0o600)
            self.token = join.token
            self.process = _process(name, _twistd("app", self.config), self.log_path, self.root, host)
            return
        names = ["localhost", "127.0.0.1"] if host is None else [host.ip, "localhost", "127.0.0.1"]
        # On loopback only 127.0.0.1 listens; in a host, every address of the host.
        interface = ":interface=127.0.0.1" if host is None else ""
        argv = [PYTHON, "-m", "pcnet.cli", "init", "--data-dir", str(self.data_dir),
                *[arg for name in names for arg in ("--host", name)],
                "--http", f"tcp:{self.http_port}{interface}", "--tls", f"tcp:{self.tls_port}{interface}"]
        if database:
            argv += ["--database", database]
        if host is not None:
            argv = host.command(argv)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env(), cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"pcnet init failed: {out.stderr or out.stdout}")
        self.token = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines()
                          if "API token:" in line)
        text = self.config.read_text()
        text = text.replace('name = "app"', f'name = "{name}"', 1)
        text = text.replace("auto_approve_networks = []", "auto_approve_networks = "
                            + json.dumps(list(auto_approve_networks)))
        text = text.replace("heartbeat_interval = 5", "heartbeat_interval = 1")
        text = text.replace("expiry_check_interval = 60", f"expiry_check_interval = {expiry_interval}")
        self.config.write_text(text)
        self.process = _process(name, _twistd("app", self.config), self.log_path, self.root, host)

    def start(self, timeout: float = 60) -> AppServer:
        self.process.start()
        try:
            for port in (self.http_port, self.tls_port):
                if self.host is not None:
                    self.host.wait_listening(port, timeout, "the Application Server", self.process)
                else:
                    wait_until(lambda: self._listening(port), timeout, "the Application Server to listen")
        except Exception as e:
            self.process.stop()
            raise RuntimeError(f"{e}\n--- app log ---\n{self.log_tail()}") from None
        return self

    def _listening(self, port: int) -> bool:
        if not self.process.alive:
            raise RuntimeError(f"the Application Server exited ({self.process.returncode}):\n{self.log_tail()}")
        return _port_open(port)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """kill -9: no clean shutdown."""
        self.process.kill()

    close = stop

    def pcnet(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a `pcnet` command against this server's configuration (as an administrator on
        the server's shell would)."""
        argv = [PYTHON, "-m", "pcnet.cli", *args, "--config", str(self.config)]
        if self.host is not None:
            argv = self.host.command(argv)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_env(),
                              cwd=self.root)

    def health(self):
        """(HTTP status, JSON body) of `GET /api/health`."""
        url = f"http://{self.address}:{self.http_port}/api/health"
        try:
            if self.host is not None:
                with self.host.entered():
                    response = urllib.request.urlopen(url, timeout=10)
            else:
                response = urllib.request.urlopen(url, timeout=10)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        with response:
            return response.status, json.loads(response.read())

    def log_text(self) -> str:
        return self.process.log_text()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)

    def connect(self, port: int | None = None, timeout: float = 10) -> socket.socket:
        """A TCP connection to the server (from its own host, if it has one)."""
        port = port or self.http_port
        if self.host is not None:
            return self.host.connect(self.address, port, timeout)
        return socket.create_connection((self.address, port), timeout=timeout)

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{self.address}:{self.http_port}/api/v1{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            if self.host is not None:
                with self.host.entered():  # urllib makes its socket in this thread
                    response = urllib.request.urlopen(request, timeout=30)
            else:
                response = urllib.request.urlopen(request, timeout=30)
            with response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
            raise ApiError(e.code, parsed) from None
        return json.loads(raw) if raw else None


class ProviderProcess:
    def __init__(self, root: Path, app: AppServer, rig, *, node: str = "print01",
                 decision_timeout: float = 10, enrolment_code: str = "", host=None,
                 servers: list[AppServer] | None = None, failback_interval: float = 60):
        """`servers`: the Application Servers to name in `[server] servers`, in order (default:
        just `app`, through `[server] endpoint`)."""
        self.root = Path(root)
        self.host = host
        self.node = node
        self.dir = self.root / "provider"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "provider.toml"
        self.log_path = self.dir / "provider.log"
        self.socket = Path(rig.provider_socket)
        self.journal_dir = self.dir / "journal"
        # A connection attempt into a silent outage gives up after 5 s and is retried.
        self.config.write_text(f"""\
[provider]
name = "{node}"
data_dir = "."
socket = "{self.socket}"
spool_dir = "{rig.pcnet_spool_dir}"
journal_dir = "journal"
cups_server = "{rig.server}"

[server]
host = "{app.tls_name}"
endpoint = "tcp:host={app.address}:port={app.http_port}:timeout=5"
servers = {json.dumps([f"tcp:host={a.address}:port={a.http_port}:timeout=5" for a in servers or ()])}
failback_interval = {failback_interval}
ca_cert = "{app.ca_cert}"
decision_timeout = {decision_timeout}
reconnect_max_delay = 1
enrolment_code = "{enrolment_code}"

[protocol]
heartbeat_interval = 1
missed_beats = 3
pending_retry = 1

[jobs]
retry_interval = 1
""")
        self.process = _process(node, _twistd("provider", self.config), self.log_path, self.dir, host)

    def start(self, timeout: float = 30) -> ProviderProcess:
        # A killed provider leaves its socket file (the provider replaces it at start): without
        # it, "listening" below means this start, not the last one.
        self.socket.unlink(missing_ok=True)
        self.process.start()

        def listening():
            if not self.process.alive:
                raise RuntimeError(f"the provider exited ({self.process.returncode}):\n{self.log_tail()}")
            return self.socket.exists()

        try:
            wait_until(listening, timeout, "the provider's backend socket")
        except Exception as e:
            raise RuntimeError(f"{e}\n--- provider log ---\n{self.log_tail()}") from None
        return self

    def wait_registered(self, count: int, timeout: float = 30) -> None:
        def registered():
            if not self.process.alive:
                raise RuntimeError(f"the provider exited:\n{self.log_tail()}")
            return self.log_text().count("registered ") >= count

        try:
            wait_until(registered, timeout, f"the provider to register its printers ({count})")
        except Exception as e:
            raise RuntimeError(f"{e}\n--- provider log ---\n{self.log_tail()}") from None

    def log_text(self) -> str:
        return self.process.log_text()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)

    def journal_entries(self) -> list[Path]:
        return sorted((self.journal_dir / "offline").glob("*.json"))

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """kill -9: no clean shutdown."""
        self.process.kill()

    close = stop


class PrintServer:
    """A print server on `host`: a private cupsd with the pcnet backend installed, a fake
    AppSocket printer behind each raw queue in `queues` (each queue wrapped by pcnet), and a Print
    Provider named `node` talking to `app`."""

    def __init__(self, host, app: AppServer, *, node: str, queues: list[str],
                 enrolment_code: str = "", decision_timeout: float = 10):
        self.host = host
        self.app = app
        self.node = node
        self.queues = list(queues)
        # The backend waits for a provider that is restarting, and for a decision as long as
        # the provider itself may wait for one.
        self.rig = CupsRig(host=host).use_pcnet(provider_wait=5, reply_timeout=60)
        self.printers = {}
        self.provider = ProviderProcess(host.dir, app, self.rig, node=node, host=host,
                                        decision_timeout=decision_timeout, enrolment_code=enrolment_code)

    def start(self) -> PrintServer:
        from pcnet.provider import cupsadmin

        try:
            self.rig.start()
            self.rig.install_pcnet_backend()
            for queue in self.queues:
                self.printers[queue] = self.rig.add_printer(queue)
                self.rig.add_queue(queue, self.printers[queue].uri)
                cupsadmin.wrap_queue(self.rig.connect(), queue)
            self.provider.start()
        except BaseException:
            self.close()
            raise
        return self

    def lp(self, queue: str, path, *, title: str, user: str) -> int:
        """`lp` a file on this print server (inside its host); the CUPS job id."""
        return self.rig.submit(queue, path, title=title, user=user)

    def wait_job(self, job_id: int, states, timeout: float = 60) -> int:
        """Wait for a CUPS job state; on failure, the provider's and the rig's logs."""
        try:
            return self.rig.wait_for_job_state(job_id, states, timeout=timeout)
        except Exception as e:
            raise AssertionError(f"{e}\n--- provider {self.node} ---\n{self.provider.log_tail()}\n"
                                 f"--- app ---\n{self.app.log_tail()}") from None

    def close(self) -> None:
        try:
            self.provider.stop()
        finally:
            self.rig.cleanup()


def pcnet1_hello(app: AppServer, *, node: str, credential: str, role: str = "provider",
                 source=None, **fields) -> dict:
    """Say one hello to the Application Server over real TLS (ALPN pcnet/1), as any client on
    the network could (from host `source`, else from the server's own host); the server's
    reply as a dict."""
    context = ssl.create_default_context(cafile=str(app.ca_cert))
    context.set_alpn_protocols(["pcnet/1"])
    if source is not None:
        raw = source.connect(app.address, app.http_port, timeout=10)
    else:
        raw = app.connect(timeout=10)
    with raw, context.wrap_socket(raw, server_hostname=app.tls_name) as tls:
        hello = {"op": "hello", "id": 1, "version": 1, "role": role, "node": node,
                 "credential": credential, **fields}
        tls.sendall(json.dumps(hello).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.split(b"\n", 1)[0])

