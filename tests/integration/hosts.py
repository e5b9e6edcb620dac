"""Separate hosts on one machine for multi-host tests: network namespaces behind a router.

A `Run` owns everything one test session builds: a directory under /tmp/pcnet-hosts, a lock
file that says the run is alive, and a unique id that every name it creates starts with
(namespaces `pcnh-<run>-...`, nftables tables `pcnh_<run>_...`). A `Network` is a router
namespace with sites behind it; each `Site` is a /24 (10.77.N.0/24, the router at .1): a switch
namespace holding a bridge, joined to the router by its own veth pair (the site's WAN link,
`wan<N>` on the router's side); each `Host` is a namespace with one interface (eth0) plugged
into its site's switch and a default route via the router. So hosts of different sites reach
each other only through the router (IP forwarding on there, and nowhere else), hosts of one site
reach each other through their switch, and nothing is reachable from or leaks into the machine's
own namespace. The addresses are private to each network: two networks (or runs) may use the
same ones.

    run = Run.start()                 # conftest's `hosts_run` fixture does this (after a sweep)
    with Network(run) as net:
        centre, site1 = net.add_site("centre"), net.add_site("site1")
        app, print1 = centre.add_host("app"), site1.add_host("print1")
        proc = app.spawn("echo", ["python3", "-m", "http.server", "8000"])   # log in the run dir
        with app.entered():           # this thread's sockets are made inside `app`
            ...
        outage = site1.cut()          # silent: nftables drops in the router, the link stays up
        site1.restore()
        site1.link_down(); site1.link_up()   # the site's WAN veth down and up again
    run.close()

Outages: `Site.cut()` drops every packet routed to or from the site (nftables, `inet` forward
hook in the router: no RST, no ICMP, the link stays up; traffic inside the site goes on);
`Site.link_down()` takes the site's WAN veth down (the router loses its route and answers
other sites with ICMP unreachable; the site's hosts lose their gateway). `Host.cut()` silences
one host (nftables `bridge` rules on its port in its site's switch: its own site loses it too) and
`Host.link_down()` takes its eth0 down. They are independent and may be combined and repeated
in any order. Each returns an `Outage` that remembers when it took effect (`time.monotonic()`),
for "time since cut" measurements.

Cleanup: every object is closed by whoever made it (fixtures with finalizers), and `Run.close()`
closes whatever is still open; processes are stopped by PID and process group, then anything
left in a namespace is killed before the namespace is deleted. `sweep()` removes what a crashed
run left behind: runs are told apart by their lock (a live run holds it), never by age or name
alone, so two runs (or two developers) on one machine never touch each other's hosts.
`Run.leftovers()` lists what of a run is still there, for the harness's own tests.

Needs root (namespaces, nftables, a private PostgreSQL started as `postgres`), `ip` (iproute2)
and `nft` (nftables); see `missing_tools()`. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

IP = "/usr/sbin/ip" if os.access("/usr/sbin/ip", os.X_OK) else (shutil.which("ip") or "ip")
NFT = "/usr/sbin/nft" if os.access("/usr/sbin/nft", os.X_OK) else (shutil.which("nft") or "nft")
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
NETNS_DIR = Path("/run/netns")
#: Where every run keeps its lock and directory. One place for the whole machine: a sweep tells
#: live runs from dead ones by the locks it finds here.
STATE_ROOT = Path("/tmp/pcnet-hosts")
NS_PREFIX = "pcnh-"
NFT_PREFIX = "pcnh_"
INSTALL_HINT = "install iproute2 and nftables with scripts/install-system-packages.sh (as root)"
#: Set to keep each run's directory (logs, configs) after the run; the next sweep removes it.
KEEP_ENV = "PCNET_HOSTS_KEEP"

_NAME = re.compile(r"^[a-z][a-z0-9]{0,19}$")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class HarnessError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """What the harness needs that this machine lacks (empty: all there)."""
    missing = [tool for tool in (IP, NFT, SETPRIV) if not os.access(tool, os.X_OK)]
    if os.geteuid() != 0:
        missing.append("root (network namespaces and nftables need CAP_NET_ADMIN and CAP_SYS_ADMIN)")
    return missing


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05, *,
               error: type[Exception] = HarnessError):
    """Poll `predicate` until it returns something truthy and return that; `error` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _run(argv: list[str], *, timeout: float = 30, input: str | None = None,
         check: bool = True, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                              env=env, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{' '.join(argv)} timed out after {timeout:g} s") from None
    if check and done.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()}")
    return done


def _ip(*args: str) -> None:
    _run([IP, *args])


# --- namespaces, seen from this process ----------------------------------------------------------

def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(namespace: str):
    """Run the body with the calling thread inside network namespace `namespace`: sockets it
    creates belong to that namespace (and keep belonging to it afterwards, whichever thread
    uses them). Other threads of the process are not affected."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(NETNS_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        os.close(own)
        raise HarnessError(f"network namespace {namespace} does not exist") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def namespaces() -> list[str]:
    """Every named network namespace on the machine."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def namespace_pids(namespace: str) -> list[int]:
    """PIDs of the processes inside `namespace` (never this process)."""
    done = _run([IP, "netns", "pids", namespace], check=False, timeout=10)
    return [int(p) for p in done.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def _kill_all(pids: list[int], grace: float) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            if pids:
                time.sleep(0.02)
        if not pids:
            return


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _group_members(pgid: int) -> list[int]:
    """Running processes of process group `pgid` (zombies aside)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            with open(entry / "stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _delete_namespace(namespace: str, grace: float = 5.0) -> None:
    _kill_all(namespace_pids(namespace), grace)
    _run([IP, "netns", "delete", namespace], check=False, timeout=10)


def processes_mentioning(text: str) -> list[int]:
    """PIDs of processes (not this one) whose command line contains `text`."""
    needle = text.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() and _alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _nft_tables(namespace: str | None = None) -> list[str]:
    argv = [NFT, "list", "tables"]
    if namespace is not None:
        argv = [IP, "netns", "exec", namespace] + argv
    done = _run(argv, check=False, timeout=10)
    return [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("table ")]


# --- runs ------------------------------------------------------------------------------------------

def _lock_path(state_root: Path, run_id: str) -> Path:
    return state_root / f"{run_id}.lock"


def _claim(state_root: Path, run_id: str) -> tuple[bool, int | None]:
    """(dead, fd): whether run `run_id` is dead, and if its lock file exists, an fd holding the
    lock (so no other sweeper cleans the same run at once)."""
    try:
        fd = os.open(_lock_path(state_root, run_id), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        # A run's lock exists before its first namespace and after its last one: without a
        # lock file, whatever carries its id is left over.
        return True, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False, None
    return True, fd


def _run_id_of_namespace(namespace: str) -> str | None:
    if not namespace.startswith(NS_PREFIX):
        return None
    return namespace[len(NS_PREFIX):].split("-", 1)[0] or None


def sweep(state_root: Path = STATE_ROOT) -> list[str]:
    """Remove what dead runs left behind (their namespaces with every process in them, their
    directories and lock files); a live run, holding its lock, is never touched. Returns what
    was removed."""
    run_ids = {_run_id_of_namespace(ns) for ns in namespaces()} - {None}
    removed = []
    if state_root.is_dir():
        for entry in state_root.iterdir():
            if entry.name.startswith("."):
                # A lock file never renamed into place: its run died while starting.
                if entry.name.endswith(".lock.new") and _unlink_if_unlocked(entry):
                    removed.append(f"lock {entry.name}")
                continue
            run_ids.add(entry.name.removesuffix(".lock"))
    for run_id in sorted(run_ids):
        dead, fd = _claim(state_root, run_id)
        if not dead:
            continue
        try:
            for ns in namespaces():
                if _run_id_of_namespace(ns) == run_id:
                    _delete_namespace(ns, grace=2.0)
                    removed.append(f"namespace {ns}")
            run_dir = state_root / run_id
            if run_dir.exists():
                for pid in processes_mentioning(str(run_dir)):
                    _kill_all([pid], 2.0)
                    removed.append(f"process {pid}")
                shutil.rmtree(run_dir, ignore_errors=True)
                removed.append(f"directory {run_dir}")
            if fd is not None:
                _lock_path(state_root, run_id).unlink(missing_ok=True)
                removed.append(f"lock {run_id}")
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def leftovers(run_id: str, state_root: Path = STATE_ROOT, pids=()) -> list[str]:
    """What of run `run_id` is still on the machine: its namespaces, the processes in `pids` still
    running and any process whose command line names the run's directory, nftables tables of
    the run in this namespace, the run's directory and its lock file. Empty after a clean close
    (with PCNET_HOSTS_KEEP unset) or a sweep. (Rules inside the run's namespaces go with them.)"""
    run_dir = state_root / run_id
    found = [f"namespace {ns}" for ns in namespaces() if _run_id_of_namespace(ns) == run_id]
    found += [f"process {pid}" for pid in pids if _alive(pid)]
    found += [f"process {pid} (mentions {run_dir})" for pid in processes_mentioning(str(run_dir))
              if pid not in pids]
    found += [f"nftables table {t}" for t in _nft_tables() if t.startswith(NFT_PREFIX + run_id)]
    if run_dir.exists():
        found.append(f"directory {run_dir}")
    if _lock_path(state_root, run_id).exists():
        found.append(f"lock file {_lock_path(state_root, run_id)}")
    return found


def _unlink_if_unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


class Run:
    """One harness session: its id, its directory and its lock, and everything still open."""

    def __init__(self, run_id: str, directory: Path, lock_fd: int, state_root: Path):
        self.id = run_id
        self.dir = directory
        self.state_root = state_root
        self._lock_fd: int | None = lock_fd
        self._open: list = []
        self._networks = 0
        self.pids_started: list[int] = []

    @classmethod
    def start(cls, state_root: Path = STATE_ROOT) -> Run:
        state_root.mkdir(parents=True, exist_ok=True)
        os.chmod(state_root, 0o755)  # services in hosts run as lp and postgres
        run_id = f"{os.getpid()}{secrets.token_hex(3)}"
        # Locked before it is visible under its name, so a sweep never mistakes it for dead.
        temp = state_root / f".{run_id}.lock.new"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.rename(temp, _lock_path(state_root, run_id))
        directory = state_root / run_id
        directory.mkdir(mode=0o755)
        os.chmod(directory, 0o755)
        return cls(run_id, directory, fd, state_root)

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def namespace(self, *parts: str) -> str:
        return NS_PREFIX + "-".join((self.id, *parts))

    def nft_table(self, *parts: str) -> str:
        return NFT_PREFIX + "_".join((self.id, *parts))

    def next_network_tag(self) -> str:
        self._networks += 1
        return f"n{self._networks}"

    def adopt(self, closable):
        """Close `closable` at `close()` if nobody closed it before."""
        self._open.append(closable)
        return closable

    def forget(self, closable) -> None:
        with contextlib.suppress(ValueError):
            self._open.remove(closable)

    def close(self) -> None:
        """Close everything still open (newest first), then remove the run's directory (unless
        PCNET_HOSTS_KEEP is set) and lock file."""
        if self.closed:
            return
        errors = []
        while self._open:
            closable = self._open.pop()
            try:
                closable.close()
            except Exception as e:  # keep going: the rest must be cleaned up too
                errors.append(f"{closable!r}: {e}")
        for ns in namespaces():
            if _run_id_of_namespace(ns) == self.id:
                _delete_namespace(ns)
        if not os.environ.get(KEEP_ENV):
            shutil.rmtree(self.dir, ignore_errors=True)
        _lock_path(self.state_root, self.id).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None
        if errors:
            raise HarnessError("cleaning up failed in part: " + "; ".join(errors))

    def leftovers(self) -> list[str]:
        """What of this run is still on the machine (see `leftovers`)."""
        return leftovers(self.id, self.state_root, self.pids_started)

    def __repr__(self) -> str:
        return f"<Run {self.id}>"


# --- processes -------------------------------------------------------------------------------------

class Process:
    """A managed child: started in its own session (so its process group is its PID), inside a
    namespace if one is given, optionally as another user (`setpriv`, so the PID stays the
    program's own), with stdout and stderr appended to `log_path`. `start()` again after a stop
    starts it anew with the same log."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, namespace: str | None = None,
                 env: dict | None = None, cwd=None, user: str | None = None, run: Run | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.namespace = namespace
        self.env = env
        self.cwd = cwd
        self.user = user
        self.run = run
        self.popen: subprocess.Popen | None = None

    def command(self) -> list[str]:
        prefix = [IP, "netns", "exec", self.namespace] if self.namespace else []
        if self.user:
            prefix += [SETPRIV, f"--reuid={self.user}", f"--regid={self.user}", "--init-groups",
                       "--reset-env"]
        return prefix + self.argv

    def start(self) -> Process:
        if self.alive:
            raise HarnessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            # `ip netns exec` and setpriv exec the program: the PID is the program's.
            self.popen = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True)
        if self.run is not None:
            self.run.pids_started.append(self.popen.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the whole process group (unless the leader has been reaped: its group
        id may belong to someone else by now)."""
        if self.popen is not None and self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def pause(self) -> None:
        self.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.send_signal(signal.SIGCONT)

    def _exited(self) -> bool:
        """The leader has exited; it stays a zombie (so its PID and group id cannot be reused)
        until `_reap`."""
        try:
            return os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _reap(self) -> None:
        # Whatever else is in the group goes with the leader, while the zombie pins the id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(HarnessError):  # reported by the callers' leftover checks
            wait_until(lambda: not _group_members(self.popen.pid), 5, f"the group of {self.name} to end",
                       interval=0.01)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15, sig: int = signal.SIGTERM) -> int | None:
        """`sig` to the process group; SIGKILL after `timeout` s; the exit status."""
        if self.popen is None:
            return None
        if self.popen.returncode is None:
            self.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.send_signal(sig)
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._reap()
        return self.popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the process group at once (a crash, `kill -9`)."""
        return self.stop(timeout=0, sig=signal.SIGKILL)

    close = stop

    def wait(self, timeout: float) -> int:
        """Wait for it to exit by itself; its exit status."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{self.name} still running after {timeout:g} s") from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid} in {self.namespace or 'this namespace'}>"


# --- outages ---------------------------------------------------------------------------------------

@dataclass
class Outage:
    """One outage: `kind` is "silent" (nftables drop) or "link-down"; `started` and `ended`
    are `time.monotonic()` readings taken as soon as the change is in effect (the command that
    made it has returned: at most a few milliseconds after the kernel applied it)."""

    kind: str
    target: str
    started: float
    ended: float | None = None

    @property
    def active(self) -> bool:
        return self.ended is None

    def elapsed(self) -> float:
        """Seconds since the outage began (until it ended, once it has)."""
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def wait_for(self, predicate, timeout: float, what: str = "the condition",
                 interval: float = 0.01) -> float:
        """Poll `predicate` until it is true; return the seconds from the start of the outage to
        the first poll that saw it true (the resolution is `interval` plus the predicate's own
        time). HarnessError after `timeout` seconds of waiting."""
        wait_until(predicate, timeout, what, interval)
        return time.monotonic() - self.started


class _Link:
    """Something with a link that can be cut silently or taken down (`outages`)."""

    outages: _Outages

    @property
    def is_cut(self) -> bool:
        return self.outages.is_cut

    @property
    def is_down(self) -> bool:
        return self.outages.is_down


class _Outages:
    """The two kinds of outage of one link, independent of each other."""

    def __init__(self, target: str):
        self.target = target
        self.history: list[Outage] = []
        self._silent: Outage | None = None
        self._down: Outage | None = None

    @property
    def is_cut(self) -> bool:
        return self._silent is not None

    @property
    def is_down(self) -> bool:
        return self._down is not None

    def _begin(self, kind: str, apply) -> Outage:
        current = self._silent if kind == "silent" else self._down
        if current is not None:
            raise HarnessError(f"{self.target}: already {'cut' if kind == 'silent' else 'down'}")
        apply()
        outage = Outage(kind, self.target, time.monotonic())
        self.history.append(outage)
        if kind == "silent":
            self._silent = outage
        else:
            self._down = outage
        return outage

    def _end(self, kind: str, apply) -> Outage:
        current = self._silent if kind == "silent" else self._down
        if current is None:
            raise HarnessError(f"{self.target}: not {'cut' if kind == 'silent' else 'down'}")
        apply()
        current.ended = time.monotonic()
        if kind == "silent":
            self._silent = None
        else:
            self._down = None
        return current


# --- the network -----------------------------------------------------------------------------------

class Host(_Link):
    """A network namespace: one machine of the test network."""

    def __init__(self, network: Network, name: str, namespace: str, site: Site | None,
                 address: ipaddress.IPv4Address | None, port: str | None):
        self.network = network
        self.name = name
        self.namespace = namespace
        self.site = site
        self.address = address
        self.port = port  # its interface's peer: a port of its site's switch
        self.dir = network.run.dir / namespace
        self.dir.mkdir(mode=0o755, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.processes: list[Process] = []
        self.outages = _Outages(f"host {name}")
        self._closed = False

    @property
    def ip(self) -> str:
        return str(self.address)

    # --- commands and processes ---

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as run inside this host."""
        return [IP, "netns", "exec", self.namespace, *argv]

    def run(self, argv: list[str], *, timeout: float = 30, check: bool = True, input: str | None = None,
            env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
        """Run a command inside this host to completion (text output captured)."""
        return _run(self.command(argv), timeout=timeout, check=check, input=input, env=env, cwd=cwd)

    def spawn(self, name: str, argv: list[str], *, env: dict | None = None, cwd=None,
              user: str | None = None, log_path: Path | None = None, start: bool = True) -> Process:
        """A managed child inside this host, its output in `<host dir>/<name>.log`; stopped when
        the host closes (newest first) if not before."""
        process = Process(name, argv, log_path or self.dir / f"{name}.log", namespace=self.namespace,
                          env=env, cwd=cwd, user=user, run=self.network.run)
        self.processes.append(process)
        return process.start() if start else process

    def pids(self) -> list[int]:
        return namespace_pids(self.namespace)

    # --- sockets, from the test process ---

    def entered(self):
        """Context manager: the calling thread's new sockets are made inside this host."""
        return entered(self.namespace)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket of this host, usable from any thread."""
        with self.entered():
            return socket.socket(family, type)

    def connect(self, address, port: int, timeout: float = 5) -> socket.socket:
        """A TCP connection from this host."""
        sock = self.socket()
        sock.settimeout(timeout)
        try:
            sock.connect((str(address), port))
        except BaseException:
            sock.close()
            raise
        return sock

    def probe(self, address, port: int, timeout: float = 1.0) -> str:
        """Try a TCP connection from this host: "open", "refused" (the host answered: reachable),
        "timeout" (no answer at all: a silent cut), or "unreachable" (an ICMP error or no route)."""
        sock = self.socket()
        sock.settimeout(timeout)
        try:
            sock.connect((str(address), port))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except (TimeoutError, socket.timeout):
            return "timeout"
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN):
                return "unreachable"
            raise
        finally:
            sock.close()

    def free_port(self) -> int:
        """A TCP port nobody listens on in this host."""
        with contextlib.closing(self.socket()) as sock:
            sock.bind(("0.0.0.0", 0))
            return sock.getsockname()[1]

    def wait_listening(self, port: int, timeout: float, what: str, process: Process | None = None,
                       address: str = "127.0.0.1") -> None:
        """Wait until something accepts TCP connections on `port` in this host; if `process`
        exits meanwhile, fail at once with the end of its log."""
        def up():
            if process is not None and not process.alive:
                raise HarnessError(f"{process.name} exited ({process.returncode}) before it listened:"
                                   f"\n{process.log_tail()}")
            return self.probe(address, port, timeout=0.5) == "open"

        try:
            wait_until(up, timeout, f"{what} on {self.name}:{port}")
        except HarnessError as e:
            tail = f"\n--- {process.name} ---\n{process.log_tail()}" if process is not None else ""
            raise HarnessError(f"{e}{tail}") from None

    # --- outages of this host's own link ---

    def _require_port(self) -> None:
        if self.port is None:
            raise HarnessError(f"{self.name} has no link of its own to cut")

    def cut(self) -> Outage:
        """Silence this host: its site's switch drops every frame to or from its port (the
        host's own site loses it too). Its link stays up; nobody gets an error."""
        self._require_port()
        table = self.network.run.nft_table(self.network.tag, "host", self.name)
        script = f"""table bridge {table} {{
  chain forward {{
    type filter hook forward priority -100; policy accept;
    iifname "{self.port}" drop
    oifname "{self.port}" drop
  }}
}}
"""
        return self.outages._begin("silent", lambda: _run(self.site.command([NFT, "-f", "-"]), input=script))

    def restore(self) -> Outage:
        """End a silent cut of this host."""
        self._require_port()
        table = self.network.run.nft_table(self.network.tag, "host", self.name)
        return self.outages._end("silent", lambda: _run(self.site.command(
            [NFT, "delete", "table", "bridge", table])))

    def link_down(self) -> Outage:
        """Take this host's eth0 down (the host knows: ENETUNREACH at once)."""
        self._require_port()
        return self.outages._begin("link-down", lambda: _ip("-n", self.namespace, "link", "set", "eth0", "down"))

    def link_up(self) -> Outage:
        self._require_port()

        def up():
            _ip("-n", self.namespace, "link", "set", "eth0", "up")
            # The default route went with the link; it comes back with it only if re-added.
            _ip("-n", self.namespace, "route", "replace", "default", "via", str(self.site.gateway))

        return self.outages._end("link-down", up)

    # --- life cycle ---

    def close(self) -> None:
        """Stop its processes (newest first, by PID and group), kill anything else left in it,
        delete the namespace."""
        if self._closed:
            return
        self._closed = True
        try:
            for process in reversed(self.processes):
                process.stop()
        finally:
            _delete_namespace(self.namespace)

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address or ''} ({self.namespace})>"


class Site(_Link):
    """A /24 behind the router: a switch (a namespace holding one bridge, no address) that the
    site's hosts plug into, and the site's WAN link, a veth pair from the switch's uplink port to
    the router's interface `wan<N>` (the site's gateway, .1)."""

    def __init__(self, network: Network, name: str, index: int):
        self.network = network
        self.name = name
        self.index = index
        self.subnet = ipaddress.ip_network(f"{network.prefix}.{index}.0/24")
        self.gateway = self.subnet[1]
        self.wan = f"wan{index}"
        self.hosts: list[Host] = []
        self.outages = _Outages(f"site {name}")
        self._closed = False
        router = network.router.namespace
        self.switch = network._namespace("switch", name)
        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
            # Bridged frames stay out of the IP hooks (br_netfilter may be loaded on the machine).
            _run(self.command(["sysctl", "-q", "-w", f"net.bridge.{key}=0"]), check=False)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("link", "add", "uplink", "netns", self.switch, "type", "veth", "peer", "name", self.wan, "netns", router)
        _ip("-n", self.switch, "link", "set", "uplink", "master", "br0")
        _ip("-n", router, "addr", "add", f"{self.gateway}/24", "dev", self.wan)
        for dev in ("lo", "br0", "uplink"):
            _ip("-n", self.switch, "link", "set", dev, "up")
        _ip("-n", router, "link", "set", self.wan, "up")

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as run inside the site's switch."""
        return [IP, "netns", "exec", self.switch, *argv]

    def add_host(self, name: str) -> Host:
        """A new host at this site, with the next address (.10, .11, ...)."""
        return self.network._add_host(self, name)

    def _table(self) -> str:
        return self.network.run.nft_table(self.network.tag, "site", self.name)

    def cut(self) -> Outage:
        """Cut the site's WAN link silently: the router drops every packet it would route to or
        from the site (no RST, no ICMP); the link stays up and traffic inside the site goes on."""
        script = f"""table inet {self._table()} {{
  chain forward {{
    type filter hook forward priority -100; policy accept;
    iifname "{self.wan}" drop
    oifname "{self.wan}" drop
  }}
}}
"""
        return self.outages._begin("silent", lambda: self.network.router.run([NFT, "-f", "-"], input=script))

    def restore(self) -> Outage:
        """End a silent cut: the drop rules (their table) are removed."""
        return self.outages._end("silent", lambda: self.network.router.run(
            [NFT, "delete", "table", "inet", self._table()]))

    def link_down(self) -> Outage:
        """Take the site's WAN veth down: the router loses its route to the site (and answers
        other sites with ICMP unreachable); the site's hosts lose their gateway."""
        return self.outages._begin("link-down", lambda: _ip(
            "-n", self.network.router.namespace, "link", "set", self.wan, "down"))

    def link_up(self) -> Outage:
        return self.outages._end("link-down", lambda: _ip(
            "-n", self.network.router.namespace, "link", "set", self.wan, "up"))

    def close(self) -> None:
        """Delete the switch (its rules go with it); the hosts are closed by the network."""
        if not self._closed:
            self._closed = True
            _delete_namespace(self.switch)

    def __repr__(self) -> str:
        return f"<Site {self.name} {self.subnet}>"


class Network:
    """A router namespace with sites behind it. Use as a context manager, or `close()` it; the
    run closes it otherwise."""

    def __init__(self, run: Run, *, prefix: str = "10.77"):
        if run.closed:
            raise HarnessError("the run is closed")
        self.run = run
        self.prefix = prefix
        self.tag = run.next_network_tag()
        self.sites: dict[str, Site] = {}
        self.hosts: dict[str, Host] = {}
        self._closed = False
        namespace = self._namespace("router")
        self.router = Host(self, "router", namespace, None, None, None)
        run.adopt(self)
        try:
            _ip("-n", namespace, "link", "set", "lo", "up")
            self.router.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        except BaseException:
            self.close()
            raise

    def _namespace(self, *parts: str) -> str:
        namespace = self.run.namespace(self.tag, *parts)
        _ip("netns", "add", namespace)
        return namespace

    def add_site(self, name: str) -> Site:
        if not _NAME.match(name):
            raise HarnessError(f"site name {name!r}: lower-case letters and digits, at most 20")
        if name in self.sites:
            raise HarnessError(f"site {name} exists")
        site = Site(self, name, len(self.sites))
        self.sites[name] = site
        return site

    def _add_host(self, site: Site, name: str) -> Host:
        if not _NAME.match(name) or name in ("router", "switch"):
            raise HarnessError(f"host name {name!r}: lower-case letters and digits, at most 20, "
                               "not 'router' or 'switch'")
        if name in self.hosts:
            raise HarnessError(f"host {name} exists")
        if len(site.hosts) >= 200:
            raise HarnessError(f"site {site.name} is full")
        address = site.subnet[10 + len(site.hosts)]
        port = f"port{len(site.hosts)}"
        namespace = self._namespace(name)
        host = Host(self, name, namespace, site, address, port)
        self.hosts[name] = host
        site.hosts.append(host)
        # Both ends are made inside their namespaces: no name is ever taken in the machine's.
        _ip("link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", port, "netns", site.switch)
        _ip("-n", site.switch, "link", "set", port, "master", "br0")
        _ip("-n", site.switch, "link", "set", port, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        for dev in ("lo", "eth0"):
            _ip("-n", namespace, "link", "set", dev, "up")
        _ip("-n", namespace, "route", "add", "default", "via", str(site.gateway))
        return host

    def site_of(self, host_name: str) -> Site:
        return self.hosts[host_name].site

    def close(self) -> None:
        """Close every host (newest first), the sites' switches, then the router (rules go with
        the namespaces they are in)."""
        if self._closed:
            return
        self._closed = True
        try:
            for host in reversed(list(self.hosts.values())):
                host.close()
            for site in reversed(list(self.sites.values())):
                site.close()
        finally:
            self.router.close()
            self.run.forget(self)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Network {self.tag} of run {self.run.id}: {', '.join(self.sites)}>"


# --- PostgreSQL inside a host ----------------------------------------------------------------------

def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian layout), or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    return Path(found).resolve().parent if found else None


class Postgres:
    """A private PostgreSQL server inside a host: `initdb` on a temporary data directory (owned
    by `postgres`, trust authentication, no fsync), then `postgres` in the foreground as a
    managed child of the host, listening on every address of the host; hosts of the host's own
    /24 may connect (a `host all all NET/24 trust` line), others are refused by pg_hba.conf.
    `close()` stops it (fast shutdown) and removes the data directory."""

    def __init__(self, host: Host, *, port: int | None = None, user: str = "postgres"):
        self.host = host
        self.user = user
        self.port = port or host.free_port()
        self.dir = host.dir / "postgres"
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.process: Process | None = None
        self.bindir = postgres_bindir()
        host.network.run.adopt(self)

    def start(self, timeout: float = 30) -> Postgres:
        if self.bindir is None:
            raise HarnessError("PostgreSQL's server is not installed (no postgres binary): install "
                               "postgresql (scripts/install-system-packages.sh)")
        import pwd

        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise HarnessError(f"no user {self.user!r} to run PostgreSQL as") from None
        for d in (self.dir, self.data_dir, self.socket_dir):
            d.mkdir(mode=0o700 if d != self.dir else 0o755, parents=True, exist_ok=True)
            os.chown(d, entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir, 0o755)
        initdb = Process("initdb", [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                                    "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                         self.dir / "initdb.log", user=self.user, cwd=self.dir, run=self.host.network.run)
        initdb.start()
        try:
            status = initdb.wait(timeout=60)
        finally:
            initdb.stop()
        if status != 0:
            raise HarnessError(f"initdb failed ({status}):\n{initdb.log_tail()}")
        with open(self.data_dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.host.site.subnet} trust\n")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '*'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.socket_dir}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        self.process = self.host.spawn("postgres", [str(self.bindir / "postgres"), "-D", str(self.data_dir)],
                                       user=self.user, cwd=self.dir, log_path=self.dir / "postgres.log")
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        def ready():
            if not self.process.alive:
                raise HarnessError(f"postgres exited ({self.process.returncode}):\n{self.process.log_tail()}")
            return self.host.run([str(self.bindir / "pg_isready"), "-q", "-h", self.host.ip, "-p", str(self.port),
                                  "-U", "postgres"], check=False, timeout=10).returncode == 0

        wait_until(ready, timeout, f"PostgreSQL on {self.host.name}:{self.port}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host.ip}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres", *, from_host: Host | None = None) -> str:
        """Run SQL with psql from `from_host` (default: the server's host); its output (-At)."""
        client = from_host or self.host
        return client.run([str(self.bindir / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host.ip, "-p", str(self.port),
                           "-U", "postgres", "-d", database, "-c", sql], timeout=30).stdout

    def create_database(self, name: str) -> str:
        """CREATE DATABASE; its URL."""
        if not re.match(r"^[a-z_][a-z0-9_]*$", name):
            raise HarnessError(f"database name {name!r}")
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(sig=signal.SIGINT)  # fast shutdown

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.host.network.run.forget(self)

    def __repr__(self) -> str:
        return f"<Postgres on {self.host.name}:{self.port}>"
