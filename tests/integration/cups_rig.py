"""A private, real CUPS for integration tests: cupsd, AppSocket fake printers and queues.

`CupsRig` starts `cupsd -f -c cupsd.conf -s cups-files.conf` with everything under one temporary
directory: its own ServerRoot, spool, logs, cache and state, a Unix socket and a TCP port on
127.0.0.1. Its ServerBin is an overlay: symlinks to /usr/lib/cups/* except `backend/`, a real
directory of symlinks to the system backends, so the pcnet backend can be installed there
without touching the system CUPS. The system cupsd is never contacted.

`FakePrinter` is an AppSocket (port 9100 style) printer: every connection's bytes land in one
file. All waits are bounded; everything started is stopped by PID.

Given a `host` (hosts.py), the rig runs inside that network namespace: cupsd is started there,
`lp` and `lpadmin` run there, and the fake printers listen on that host's loopback (their
listening sockets are made inside it; this process serves them). The rig's Unix socket is a
file, so this process still reaches cupsd through it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import hosts
from pcnet.provider import cupsadmin

CUPSD = "/usr/sbin/cupsd"
LPADMIN = "/usr/sbin/lpadmin"
LP = "/usr/bin/lp"
SYSTEM_SERVERBIN = Path("/usr/lib/cups")
INSTALL_HINT = "install the CUPS packages with scripts/install-system-packages.sh (as root)"

GENERIC_POSTSCRIPT_PPD = "drv:///sample.drv/generic.ppd"  # filters run, data reaches stdin


class RigError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """Programs the rig needs that are not installed."""
    needed = [CUPSD, LPADMIN, LP, str(SYSTEM_SERVERBIN / "backend" / "socket")]
    return [p for p in needed if not os.access(p, os.X_OK)]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; RigError after `timeout` seconds."""
    return hosts.wait_until(predicate, timeout, what, interval, error=RigError)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakePrinter:
    """An AppSocket printer on 127.0.0.1 (of `host`, if given): each connection's bytes are
    written to `<directory>/job-NNN.bin` once the sender closes its side."""

    def __init__(self, directory: Path, host=None):
        self.host = host
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.port = 0
        # A stalled printer accepts connections and never reads or closes them (a jammed
        # printer): the sending backend waits until it is told to stop.
        self.stall = False

    @property
    def uri(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> FakePrinter:
        self._server = self.host.socket() if self.host else socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"fake-printer-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while self._server is not None:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._receive, args=(conn,), daemon=True).start()

    def _receive(self, conn: socket.socket) -> None:
        if self.stall:
            self._stopped.wait(60)
            conn.close()
            return
        data = bytearray()
        conn.settimeout(60)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            conn.close()
        with self._lock:
            self._count += 1
            name = self.directory / f"job-{self._count:03d}.bin"
        part = name.with_suffix(".part")
        part.write_bytes(bytes(data))
        part.rename(name)

    def received(self) -> list[bytes]:
        """What arrived so far, one bytes object per connection, in order."""
        return [p.read_bytes() for p in sorted(self.directory.glob("job-*.bin"))]

    def wait_for(self, count: int, timeout: float = 20) -> list[bytes]:
        wait_until(lambda: len(self.received()) >= count, timeout,
                   f"{count} job(s) at the fake printer on port {self.port}")
        return self.received()

    def stop(self) -> None:
        self._stopped.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._thread is not None:
            self._thread.join(timeout=2)


class FakeProvider:
    """A scripted stand-in for the Print Provider's local socket: it records each job message
    (and the spool file's bytes at that moment) and answers with `decide(message)`, which
    returns a decision dict, raw bytes to send as they are, or None to close without a reply.
    By default it answers {"action": "print"}."""

    def __init__(self, path: Path | str, decide=None):
        self.path = Path(path)
        self.decide = decide or (lambda message: {"action": "print"})
        self.messages: list[dict] = []
        self.spooled: list[bytes | None] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def answer(self, action: str, reason: str = "", device_uri: str | None = None) -> None:
        """From now on answer every job with this decision."""
        decision = {"action": action, "reason": reason}
        if device_uri:
            decision["device_uri"] = device_uri
        self.decide = lambda message: decision

    def start(self) -> FakeProvider:
        if self.path.exists():
            self.path.unlink()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while self._server is not None:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        try:
            while b"\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return
        message = json.loads(buf.split(b"\n", 1)[0])
        try:
            spooled = Path(message["spool"]).read_bytes()
        except (OSError, KeyError, TypeError):
            spooled = None
        self.messages.append(message)
        self.spooled.append(spooled)
        reply = self.decide(message)
        if reply is None:
            return
        if not isinstance(reply, bytes):
            reply = json.dumps(reply).encode() + b"\n"
        try:
            conn.sendall(reply)
        except OSError:
            pass

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        wait_until(lambda: len(self.messages) >= count, timeout,
                   f"{count} job message(s) at the fake provider")
        return self.messages

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class CupsRig:
    """A private cupsd. `set_env` becomes SetEnv lines in cups-files.conf (the environment of
    filters and backends; the pcnet backend reads its PCNET_* settings from there)."""

    def __init__(self, root: Path | None = None, *, set_env: dict[str, str] | None = None,
                 host=None):
        self.host = host
        if root is None:
            if host is not None:
                root = host.dir / "cups"
                root.mkdir(parents=True, exist_ok=True)
            else:
                root = Path(tempfile.mkdtemp(prefix="pcnet-cups-"))
        self.root = Path(root)
        # Filters run as `lp`: every directory on the way to the spool must be traversable.
        os.chmod(self.root, 0o755)
        self.set_env = dict(set_env or {})
        self.conf_dir = self.root / "etc"
        self.spool_dir = self.root / "spool"
        self.log_dir = self.root / "log"
        self.cache_dir = self.root / "cache"
        self.state_dir = self.root / "run"
        self.temp_dir = self.spool_dir / "tmp"
        self.serverbin = self.root / "lib"
        self.backend_dir = self.serverbin / "backend"
        self.socket_path = self.root / "cups.sock"
        self.error_log = self.log_dir / "error_log"
        # Where the pcnet backend of this cupsd finds its provider and spools (see use_pcnet).
        self.provider_socket = self.root / "provider.sock"
        self.pcnet_spool_dir = self.root / "pcnet-spool"
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.printers: list[FakePrinter] = []
        if host is not None:
            host.network.run.adopt(self)  # closed with the run if nobody closes it before

    # --- life cycle ----------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """What `lp -h`, `lpadmin -h` and `cupsadmin.connect` take."""
        return str(self.socket_path)

    def start(self, timeout: float = 15) -> CupsRig:
        missing = missing_tools()
        if missing:
            raise RigError(f"CUPS is not installed ({', '.join(missing)} missing): {INSTALL_HINT}")
        for d in (self.conf_dir, self.spool_dir, self.temp_dir, self.log_dir, self.cache_dir,
                  self.state_dir, self.serverbin):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        self._build_serverbin()
        self.port = self.host.free_port() if self.host else free_port()
        self._write_config()
        with open(self.log_dir / "cupsd.stderr", "wb") as output:  # the child keeps its copy
            # In a host, `ip netns exec` execs cupsd: the PID is cupsd's own.
            self.process = subprocess.Popen(
                self._command([CUPSD, "-f", "-c", str(self.conf_dir / "cupsd.conf"),
                               "-s", str(self.conf_dir / "cups-files.conf")]),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                start_new_session=True,
            )
        try:
            wait_until(self._ready, timeout, f"cupsd on {self.socket_path}")
        except RigError as e:
            self.stop()
            raise RigError(f"cupsd did not start: {e}\n{self.diagnostics()}") from None
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            check = subprocess.run(
                [CUPSD, "-t", "-c", str(self.conf_dir / "cupsd.conf"),
                 "-s", str(self.conf_dir / "cups-files.conf")],
                capture_output=True, text=True, timeout=10, check=False)
            raise RigError(f"cupsd exited with status {self.process.returncode}; cupsd -t says: "
                           f"{(check.stdout + check.stderr).strip()}")
        if not self.socket_path.exists():
            return False
        try:
            cupsadmin.connect(self.server).getPrinters()
        except Exception:
            return False
        return True

    def stop(self) -> None:
        for printer in self.printers:
            printer.stop()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        # Filters and backends of unfinished jobs run in their own process groups; cupsd ends
        # them on SIGTERM, but a lingering one holds files: end those we can find, by PID.
        self._kill_leftovers()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.host is not None:
            self.host.network.run.forget(self)

    close = cleanup

    def job_processes(self) -> list[int]:
        """PIDs of the filters and backends this cupsd started (and their children)."""
        marker = f"CUPS_SERVERBIN={self.serverbin}\0".encode()
        pids = []
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                environ = (pid_dir / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ:
                pids.append(int(pid_dir.name))
        return pids

    def _kill_leftovers(self) -> None:
        for pid in self.job_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def diagnostics(self, lines: int = 40) -> str:
        parts = []
        for path in (self.log_dir / "cupsd.stderr", self.error_log):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no logs)"

    # --- configuration -------------------------------------------------------------------------

    def _build_serverbin(self) -> None:
        for entry in SYSTEM_SERVERBIN.iterdir():
            target = self.serverbin / entry.name
            if entry.name == "backend":
                continue
            if not target.exists() and not target.is_symlink():
                target.symlink_to(entry)
        self.backend_dir.mkdir(exist_ok=True)
        os.chmod(self.backend_dir, 0o755)
        for entry in (SYSTEM_SERVERBIN / "backend").iterdir():
            target = self.backend_dir / entry.name
            if not target.exists() and not target.is_symlink():
                target.symlink_to(entry.resolve())

    def use_pcnet(self, *, provider_wait: float = 1, reply_timeout: float = 15) -> CupsRig:
        """Before start(): point the pcnet backend's settings into the rig (SetEnv lines)."""
        self.set_env.update({
            "PCNET_PROVIDER_SOCKET": str(self.provider_socket),
            "PCNET_SPOOL_DIR": str(self.pcnet_spool_dir),
            "PCNET_PROVIDER_WAIT": f"{provider_wait:g}",
            "PCNET_PROVIDER_TIMEOUT": f"{reply_timeout:g}",
        })
        return self

    def install_pcnet_backend(self, python: str = sys.executable) -> Path:
        """Install the launcher into this cupsd's backend directory (mode 0700, run as root)."""
        return cupsadmin.install_backend(self.backend_dir, python)

    def _write_config(self) -> None:
        (self.conf_dir / "cupsd.conf").write_text(f"""\
LogLevel debug
LogTimeFormat usecs
Listen 127.0.0.1:{self.port}
Listen {self.socket_path}
Browsing No
BrowseLocalProtocols none
WebInterface No
DefaultAuthType None
DefaultEncryption Never
ErrorPolicy stop-printer
JobRetryInterval 5
MaxJobTime 120
PreserveJobFiles Yes
PreserveJobHistory Yes
<Location />
  Order allow,deny
  Allow all
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
    Allow all
  </Limit>
</Policy>
""")
        set_env = "".join(f"SetEnv {k} {v}\n" for k, v in sorted(self.set_env.items()))
        (self.conf_dir / "cups-files.conf").write_text(f"""\
ServerRoot {self.conf_dir}
RequestRoot {self.spool_dir}
TempDir {self.temp_dir}
CacheDir {self.cache_dir}
StateDir {self.state_dir}
ServerBin {self.serverbin}
DataDir /usr/share/cups
ServerKeychain {self.conf_dir / "ssl"}
AccessLog {self.log_dir / "access_log"}
ErrorLog {self.error_log}
PageLog {self.log_dir / "page_log"}
Printcap {self.state_dir / "printcap"}
User lp
Group lp
SystemGroup root
LogFileGroup root
CreateSelfSignedCerts no
{set_env}""")

    # --- queues and jobs ----------------------------------------------------------------------

    def connect(self):
        return cupsadmin.connect(self.server)

    def _command(self, argv: list[str]) -> list[str]:
        return self.host.command(argv) if self.host is not None else argv

    def add_printer(self, name: str) -> FakePrinter:
        printer = FakePrinter(self.root / "printers" / name, self.host).start()
        self.printers.append(printer)
        return printer

    def add_queue(self, name: str, device_uri: str, *, model: str = "raw") -> None:
        """`model` is "raw" (a one-document job reaches the backend as argv[6]) or a PPD/driver
        URI such as GENERIC_POSTSCRIPT_PPD (filters run; the backend reads stdin)."""
        argv = [LPADMIN, "-h", self.server, "-p", name, "-E", "-v", device_uri, "-m", model]
        if model != "raw":
            # With a PPD the socket backend asks the printer for supply levels over SNMP and
            # waits ~4 s for an answer a fake printer never gives.
            argv += ["-o", "cupsSNMPSupplies=false"]
        self.run(argv)

    def submit(self, queue: str, path: Path | str, *, title: str | None = None,
               user: str | None = None, copies: int = 1, options: dict | None = None) -> int:
        """`lp` a file; returns the job id."""
        argv = [LP, "-h", self.server, "-d", queue]
        if title is not None:
            argv += ["-t", title]
        if user is not None:
            argv += ["-U", user]
        if copies != 1:
            argv += ["-n", str(copies)]
        for key, value in (options or {}).items():
            argv += ["-o", f"{key}={value}"]
        argv.append(str(path))
        out = self.run(argv)
        # "request id is QUEUE-12 (1 file(s))"
        try:
            return int(out.split("request id is ", 1)[1].split()[0].rsplit("-", 1)[1])
        except (IndexError, ValueError):
            raise RigError(f"cannot read the job id from lp's output {out!r}") from None

    def run(self, argv: list[str], timeout: float = 30) -> str:
        try:
            done = subprocess.run(self._command(argv), capture_output=True, text=True, timeout=timeout,
                                  env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                                  check=False)
        except subprocess.TimeoutExpired:
            raise RigError(f"{' '.join(argv)} timed out after {timeout} s") from None
        if done.returncode != 0:
            raise RigError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def job(self, job_id: int) -> dict:
        return self.connect().getJobAttributes(job_id)

    def job_state(self, job_id: int) -> int:
        return int(self.connect().getJobAttributes(
            job_id, requested_attributes=["job-id", "job-state"])["job-state"])

    def wait_for_job_state(self, job_id: int, states, timeout: float = 20) -> int:
        """Poll until the job is in one of `states` (IPP job-state numbers); return it."""
        states = {int(s) for s in ([states] if isinstance(states, int) else states)}
        seen = []

        def check():
            state = self.job_state(job_id)
            if not seen or seen[-1] != state:
                seen.append(state)
            return state if state in states else None

        try:
            return wait_until(check, timeout, f"job {job_id} to reach state {sorted(states)}")
        except RigError as e:
            raise RigError(f"{e}; states seen {seen}; job {self.job(job_id)}\n"
                           f"{self.diagnostics()}") from None

    def printer(self, queue: str) -> dict:
        return self.connect().getPrinterAttributes(queue)

    def queue_is_running(self, queue: str) -> bool:
        """Enabled (not stopped) and accepting jobs."""
        attrs = self.printer(queue)
        return attrs["printer-state"] != 5 and bool(attrs["printer-is-accepting-jobs"])
