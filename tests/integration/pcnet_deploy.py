"""A real pcnet deployment for end-to-end tests: an Application Server and a Print Provider, each
in its own process, on loopback.

- `AppServer`: `pcnet init` a data directory (SQLite, its own CA, an admin API token), then run
  the Application Server (`pcnet.app.service.make_app_service`) in a child process; `stop()` and
  `start()` again simulate an outage. `api()` calls the admin JSON API with the token.
- `ProviderProcess`: `twistd -n pcnet provider --config provider.toml` pointed at that server
  and at a private cupsd (cups_rig.py), with the enrolment code an administrator issued.
- `pcnet1_hello`: one hello over real TLS, as a stranger on the network would say it.

Every wait is bounded; every process is stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cups_rig import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TWISTD = str(Path(PYTHON).with_name("twistd"))

_APP_RUNNER = """
import sys
from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
from pcnet.app.service import make_app_service
from pcnet.errors import PcnetError
try:
    app = make_app_service(sys.argv[1], reactor)
except PcnetError as e:
    sys.stderr.write("pcnet: %s\\n" % e.message)
    sys.exit(1)
app.startService()
reactor.addSystemEventTrigger("before", "shutdown", app.stopService)
reactor.run()
"""


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


def _stop(process: subprocess.Popen | None, timeout: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class ApiError(Exception):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class AppServer:
    """One Application Server process. `database`: a database URL for `pcnet init` (default:
    SQLite in the data directory). `join`: another AppServer whose database, CA, certificate
    and API token this one shares (a second server of an HA pair: its own name and ports; no
    `pcnet init`, as docs/ha.md says)."""

    def __init__(self, root: Path, *, expiry_interval: float = 1.0,
                 auto_approve_networks: tuple[str, ...] = ("127.0.0.0/8",),
                 database: str | None = None, name: str = "app", join: AppServer | None = None):
        self.root = Path(root)
        self.name = name
        self.data_dir = self.root / name
        self.http_port = free_port()
        self.tls_port = free_port()
        self.expiry_interval = expiry_interval
        self.process: subprocess.Popen | None = None
        self.log_path = self.root / f"{name}.log"
        self.config = self.data_dir / "pcnet.toml"
        self.ca_cert = self.data_dir / "tls" / "ca.pem"
        if join is not None:
            import shutil

            self.data_dir.mkdir(parents=True, mode=0o700)
            shutil.copytree(join.data_dir / "tls", self.data_dir / "tls")
            text = join.config.read_text()
            text = text.replace(f"tcp:{join.http_port}:", f"tcp:{self.http_port}:")
            text = text.replace(f"tcp:{join.tls_port}:", f"tcp:{self.tls_port}:")
            text = text.replace(f'name = "{join.name}"', f'name = "{name}"', 1)
            self.config.write_text(text)
            self.config.chmod(0o600)
            self.token = join.token
            return
        command = [PYTHON, "-m", "pcnet.cli", "init", "--data-dir", str(self.data_dir),
                   "--host", "localhost", "--host", "127.0.0.1",
                   "--http", f"tcp:{self.http_port}:interface=127.0.0.1",
                   "--tls", f"tcp:{self.tls_port}:interface=127.0.0.1"]
        if database:
            command += ["--database", database]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env(),
                             cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"pcnet init failed: {out.stderr or out.stdout}")
        self.token = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines()
                          if "API token:" in line)
        text = self.config.read_text()
        text = text.replace("auto_approve_networks = []", "auto_approve_networks = "
                            + json.dumps(list(auto_approve_networks)))
        text = text.replace("heartbeat_interval = 5", "heartbeat_interval = 1")
        text = text.replace("expiry_check_interval = 60", f"expiry_check_interval = {expiry_interval}")
        text = text.replace('name = "app"', f'name = "{name}"', 1)
        self.config.write_text(text)

    def pcnet(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a `pcnet` command against this server's configuration (as an administrator on
        the server's shell would)."""
        return subprocess.run([PYTHON, "-m", "pcnet.cli", *args, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=timeout, env=_env(),
                              cwd=self.root)

    def kill(self) -> None:
        """kill -9: no clean shutdown, as a crash or a power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def health(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/health", timeout=10) as r:
            return r.status, json.loads(r.read())

    def start(self, timeout: float = 60) -> AppServer:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [PYTHON, "-c", _APP_RUNNER, str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=_env(),
            cwd=self.root, start_new_session=True)

        def up():
            if self.process.poll() is not None:
                raise RuntimeError(f"the Application Server exited ({self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            return _port_open(self.http_port) and _port_open(self.tls_port)

        wait_until(up, timeout, "the Application Server to listen")
        return self

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/v1{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
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
    """`servers`: the Application Servers to name in `[server] servers`, in order (default:
    just `app`, through `[server] endpoint`)."""

    def __init__(self, root: Path, app: AppServer, rig, *, node: str = "print01",
                 decision_timeout: float = 10, enrolment_code: str = "",
                 servers: list[AppServer] | None = None, failback_interval: float = 60):
        self.root = Path(root)
        self.dir = self.root / "provider"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "provider.toml"
        self.log_path = self.dir / "provider.log"
        self.socket = Path(rig.provider_socket)
        self.journal_dir = self.dir / "journal"
        self.config.write_text(f"""\
[provider]
name = "{node}"
data_dir = "."
socket = "{self.socket}"
spool_dir = "{rig.pcnet_spool_dir}"
journal_dir = "journal"
cups_server = "{rig.server}"

[server]
host = "localhost"
endpoint = "tcp:host=127.0.0.1:port={app.http_port}"
servers = {json.dumps([f"tcp:host=127.0.0.1:port={a.http_port}" for a in servers or ()])}
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
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> ProviderProcess:
        self.process = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", f"--logfile={self.log_path}", "pcnet", "provider",
             "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            env=_env(), cwd=self.dir, start_new_session=True)

        def listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"the provider exited ({self.process.returncode}):\n{self.log_tail()}")
            return self.socket.exists()

        try:
            wait_until(listening, timeout, "the provider's backend socket")
        except Exception as e:
            raise RuntimeError(f"{e}\n--- provider log ---\n{self.log_tail()}") from None
        return self

    def wait_registered(self, count: int, timeout: float = 30) -> None:
        def registered():
            if self.process.poll() is not None:
                raise RuntimeError(f"the provider exited:\n{self.log_tail()}")
            return self.log_text().count("registered ") >= count

        try:
            wait_until(registered, timeout, f"the provider to register its printers ({count})")
        except Exception as e:
            raise RuntimeError(f"{e}\n--- provider log ---\n{self.log_tail()}") from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    def journal_entries(self) -> list[Path]:
        return sorted((self.journal_dir / "offline").glob("*.json"))

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


def pcnet1_hello(app: AppServer, *, node: str, credential: str, role: str = "provider",
                 **fields) -> dict:
    """Say one hello to the Application Server over real TLS (ALPN pcnet/1), as any client on
    the network could; the server's reply as a dict."""
    import ssl

    context = ssl.create_default_context(cafile=str(app.ca_cert))
    context.set_alpn_protocols(["pcnet/1"])
    with socket.create_connection(("127.0.0.1", app.http_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
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


def settle(seconds: float) -> None:
    time.sleep(seconds)
