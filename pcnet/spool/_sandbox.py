"""Run the analysis's helper programs (Ghostscript) sandboxed and bounded.

A print job is hostile input, and Ghostscript runs it as a program. Every helper process the
analysis starts goes through :class:`Sandbox`, which gives it:

* **a private, empty temporary directory** and no view of other jobs' files or the host's
  ``/tmp``. With bubblewrap (``bwrap``, mode ``bwrap``) the helper runs in its own user, mount,
  PID, network, IPC and UTS namespaces, as uid 65534 with no capabilities; it sees ``/usr``,
  the few files of ``/etc`` and ``/var/lib/ghostscript`` Ghostscript reads (read-only), an
  empty ``/dev`` subset, a size-limited tmpfs as ``/tmp``, and the files the caller
  :meth:`exposes <Sandbox.expose>` (read-only, under ``/job``) — nothing else exists for it.
  Without bubblewrap (mode ``user``) it runs as an unprivileged user (``sandbox_user``, when the
  provider is root), with ``TMPDIR`` set to a private directory of the job (Ghostscript's
  ``-dSAFER`` grants its temporary directory, so that directory must be the job's own), and the
  caller passes explicit ``--permit-file-read`` lists;
* **limits** (set with ``prlimit`` before the helper starts, so nothing runs in the forked child
  of a multi-threaded Python): address space (``memory_mb``), CPU time (``cpu_seconds``), size
  of any file it writes (``temp_mb``), no core dumps; a wall-clock ``timeout`` enforced here;
  in mode ``user`` the temporary directory's total size is watched too (bwrap's tmpfs has a
  size of its own);
* **no orphan**: the helper leads its own process group, which is killed on timeout, on
  :meth:`Process.kill` and after it exits; and it dies with its parent (bwrap
  ``--die-with-parent``, or ``setpriv --pdeathsig KILL``). The parent-death signal follows the
  *thread* that started the helper: :meth:`Process.wait` it from the thread that called
  :meth:`Sandbox.start` (a worker of the provider's analysis pool does), never let that thread
  end first.

A :class:`Sandbox` belongs to one job (one spool file): :meth:`Sandbox.start` may be called many
times, also from several threads at once (page ranges rendered in parallel); each helper gets its
own temporary directory and limits. The caller reads the helper's stdout and stderr (bounded
reading is the caller's job: only it knows the format) and calls :meth:`Process.wait`, which
says which limit, if any, stopped it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import IO

SANDBOX_MODES = ("auto", "bwrap", "user")

#: The limits a run can hit, as reported in :attr:`Outcome.limit` and in an analysis's
#: ``limits_hit``: they depend on the machine (its speed, its load), unlike the file's content.
MACHINE_LIMITS = ("time", "cpu", "memory", "output")

# How often the watchdog looks at a user-mode temporary directory's size.
_POLL_SECONDS = 0.2
# A temporary directory with more entries than this is over its limit whatever their size.
_MAX_TEMP_ENTRIES = 10_000
_FILE_DESCRIPTORS = 256
# The uid the helper has inside bubblewrap's user namespace (the conventional "nobody").
_BWRAP_UID = 65534

# What Ghostscript (and the dynamic loader) read outside /usr; missing ones are skipped.
_BWRAP_READ_ONLY = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/papersize",  # libpaper's default paper: PostScript without a size prints on it
    "/etc/fonts",
    "/etc/ghostscript",
    "/var/lib/ghostscript",
    "/var/cache/fontconfig",
)
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(RuntimeError):
    """The requested sandbox cannot run on this machine (bwrap missing or not permitted...)."""


@dataclass(frozen=True)
class Limits:
    """What the analysis of one spool file may use: the provider's ``[analysis]`` section.

    ``timeout``, ``cpu_seconds``, ``memory_mb`` and ``temp_mb`` bound each helper process;
    ``max_unpacked_mb`` bounds what a gzip'd or PJL-wrapped job unpacks to in its directory;
    ``max_pages`` and ``max_copies`` bound what a file may claim (more is reported as
    ``max + 1`` and flagged). ``sandbox`` is ``auto`` (bubblewrap if it works, else ``user``),
    ``bwrap`` or ``user``; ``sandbox_user`` is who helpers run as in mode ``user`` when the
    provider is root; ``work_dir`` is where job directories are made (empty: the system's
    temporary directory).
    """

    timeout: float = 120.0
    cpu_seconds: int = 120
    memory_mb: int = 1024
    temp_mb: int = 64
    max_unpacked_mb: int = 1024
    max_pages: int = 10_000
    max_copies: int = 9_999
    sandbox: str = "auto"
    sandbox_user: str = "nobody"
    work_dir: str = ""

    def __post_init__(self) -> None:
        if self.sandbox not in SANDBOX_MODES:
            raise ValueError(f"sandbox must be one of {', '.join(SANDBOX_MODES)}")
        for name in ("timeout", "cpu_seconds", "memory_mb", "temp_mb", "max_unpacked_mb",
                     "max_pages", "max_copies"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def with_timeout(self, timeout: float | None) -> Limits:
        return self if timeout is None else replace(self, timeout=float(timeout))


@dataclass(frozen=True)
class Outcome:
    """How a helper ended: its exit status (negative: killed by that signal), the limit that
    stopped it (one of :data:`MACHINE_LIMITS`, or what the caller gave :meth:`Process.kill`),
    and the wall-clock seconds it ran."""

    returncode: int
    limit: str | None
    seconds: float


# --- choosing the sandbox ------------------------------------------------------------------------

_probe_lock = threading.Lock()
_bwrap_probe: dict[str, str | None] = {}  # bwrap path -> None if it works, else why not


def resolve_mode(limits: Limits) -> str:
    """``bwrap`` or ``user``: the sandbox *limits* asks for, if it works here.

    Raises :class:`SandboxUnavailable` when the mode asked for explicitly cannot run (or, in
    mode ``auto``, when not even ``user`` can)."""
    for tool in ("prlimit", "setpriv"):
        if shutil.which(tool) is None:
            raise SandboxUnavailable(f"{tool} (util-linux) is not installed")
    if limits.sandbox in ("auto", "bwrap"):
        problem = bwrap_problem()
        if problem is None:
            return "bwrap"
        if limits.sandbox == "bwrap":
            raise SandboxUnavailable(f"bubblewrap cannot run here: {problem}")
    if os.geteuid() == 0:
        _sandbox_user(limits.sandbox_user)  # fails early for an unknown user
        base = os.path.abspath(limits.work_dir or tempfile.gettempdir())
        closed = _closed_ancestor(base)
        if closed is not None:
            raise SandboxUnavailable(
                f"the user sandbox needs a work_dir that sandbox_user {limits.sandbox_user!r} "
                f"can reach, and {closed} is not searchable by others"
            )
    return "user"


def _closed_ancestor(path: str) -> str | None:
    """The first directory from / down to *path* that others may not search, if any."""
    current = "/"
    for part in [p for p in path.split(os.sep) if p]:
        current = os.path.join(current, part)
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return current
    return None


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox a helper here, or ``None`` when it can (checked once)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not installed (Debian package bubblewrap)"
    with _probe_lock:
        if bwrap not in _bwrap_probe:
            true = shutil.which("true", path="/usr/bin:/bin") or "/usr/bin/true"
            command = [bwrap, *_bwrap_base(1 << 20), "--", true]
            try:
                done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=30, env=_ENV_BASE)
            except (OSError, subprocess.TimeoutExpired) as error:
                _bwrap_probe[bwrap] = str(error)
            else:
                message = done.stderr.decode("utf-8", "replace").strip()[:200]
                _bwrap_probe[bwrap] = (
                    None if done.returncode == 0 else message or f"exit status {done.returncode}"
                )
        return _bwrap_probe[bwrap]


def _sandbox_user(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SandboxUnavailable(f"sandbox_user {name!r} does not exist") from None
    if entry.pw_uid == 0:
        raise SandboxUnavailable("sandbox_user must not be root")
    return entry.pw_uid, entry.pw_gid


_ENV_BASE = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def _bwrap_base(temp_bytes: int) -> list[str]:
    arguments = [
        "--unshare-all",
        "--unshare-user",  # fail rather than run without a user namespace
        "--uid", str(_BWRAP_UID),
        "--gid", str(_BWRAP_UID),
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--ro-bind", "/usr", "/usr",
    ]
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            arguments += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            arguments += ["--ro-bind", top, top]
    for path in _BWRAP_READ_ONLY:
        arguments += ["--ro-bind-try", path, path]
    arguments += [
        "--dev", "/dev",
        "--perms", "0700", "--size", str(temp_bytes), "--tmpfs", "/tmp",
        "--dir", "/job",
        "--chdir", "/tmp",
    ]
    return arguments


# --- the job's directory and its sandbox ------------------------------------------------------


class Sandbox:
    """One spool file's private directory (0700) and the sandbox its helpers run in.

    Use it as a context manager: the directory, with everything unpacked or written in it, is
    removed at the end. It is created on first use, so a format read without helpers costs
    nothing.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._mode: str | None = None
        self._path: str | None = None
        self._lock = threading.Lock()
        self._exposed: dict[str, str] = {}  # host path -> path inside the sandbox
        self._binds: list[tuple[str, str]] = []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def mode(self) -> str:
        """``bwrap`` or ``user`` (resolved on first use; see :func:`resolve_mode`)."""
        if self._mode is None:
            self._mode = resolve_mode(self.limits)
        return self._mode

    @property
    def path(self) -> str:
        """The job's private directory (created on first use, mode 0700)."""
        with self._lock:
            if self._path is None:
                self._path = tempfile.mkdtemp(prefix="pcnet-job-", dir=self.limits.work_dir or None)
            return self._path

    def create(self, name: str) -> IO[bytes]:
        """A new file of the job in its private directory, open for writing (mode 0600)."""
        if not name or os.sep in name or name.startswith("."):
            raise ValueError(f"not a plain file name: {name!r}")
        return open(os.path.join(self.path, name), "xb",
                    opener=lambda path, flags: os.open(path, flags, 0o600))

    def close(self) -> None:
        with self._lock:
            path, self._path = self._path, None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def expose(self, host_path: str) -> str:
        """Let helpers read *host_path*; returns the path they read it by (read-only for them).

        Under bubblewrap the file is bound read-only at ``/job/N``; in mode ``user`` as root, the
        sandbox user gets a readable link or copy in a directory it cannot list; otherwise the
        path is unchanged (the caller's ``--permit-file-read`` list is then what guards it)."""
        host_path = os.path.abspath(host_path)
        mode = self.mode
        with self._lock:
            known = self._exposed.get(host_path)
            if known is None and mode == "bwrap":
                known = self._exposed[host_path] = f"/job/{len(self._exposed)}"
                self._binds.append((host_path, known))
        if known is not None:
            return known
        inside = self._shared_copy(host_path) if self._drops_privileges() else host_path
        with self._lock:
            return self._exposed.setdefault(host_path, inside)

    def _drops_privileges(self) -> bool:
        return self.mode == "user" and os.geteuid() == 0

    def _shared_copy(self, host_path: str) -> str:
        """A file the sandbox user can read, in a directory it cannot list (mode ``user``)."""
        path = self.path
        shared = os.path.join(path, "shared")
        with self._lock:
            os.chmod(path, 0o711)  # traversable, not listable
            os.makedirs(shared, mode=0o711, exist_ok=True)
        target = os.path.join(shared, secrets.token_hex(12))
        if os.path.dirname(host_path) == path:
            os.link(host_path, target)  # a file of the job itself: no copy needed
        else:
            with open(host_path, "rb") as source, open(target, "xb") as copy:
                shutil.copyfileobj(source, copy, 1 << 20)
        os.chmod(target, 0o444)
        return target

    # --- running a helper ---------------------------------------------------------------------

    def start(self, argv: list[str], *, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> Process:
        """Start *argv* (paths in it as :meth:`expose` returned them) sandboxed and bounded."""
        limits = self.limits
        temp_bytes = limits.temp_mb * 1024 * 1024
        memory = limits.memory_mb * 1024 * 1024
        command = [
            shutil.which("prlimit") or "prlimit",
            f"--as={memory}:{memory}",
            # The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
            f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
            f"--fsize={temp_bytes}:{temp_bytes}",
            "--core=0:0",
            f"--nofile={_FILE_DESCRIPTORS}:{_FILE_DESCRIPTORS}",
            "--",
        ]
        env = dict(_ENV_BASE)
        temp_dir = None
        if self.mode == "bwrap":
            with self._lock:
                binds = list(self._binds)
            command.append(shutil.which("bwrap") or "bwrap")
            command += _bwrap_base(temp_bytes)
            for host, inside in binds:
                command += ["--ro-bind", host, inside]
            program = os.path.dirname(argv[0])
            if os.path.isabs(argv[0]) and not program.startswith("/usr/"):
                command += ["--ro-bind", program, program]
            env.update(TMPDIR="/tmp", HOME="/tmp")
            command += ["--", *argv]
            cwd = None
        else:
            temp_dir = tempfile.mkdtemp(prefix="tmp-", dir=self.path)
            setpriv = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "KILL", "--nnp"]
            if self._drops_privileges():
                uid, gid = _sandbox_user(limits.sandbox_user)
                os.chmod(self.path, 0o711)
                os.chown(temp_dir, uid, gid)
                setpriv += [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            env.update(TMPDIR=temp_dir, HOME=temp_dir)
            command += [*setpriv, "--", *argv]
            cwd = temp_dir
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group, killed as one
            close_fds=True,
        )
        return Process(popen, limits, temp_dir, bwrap=self.mode == "bwrap")


class Process:
    """A running helper. Read :attr:`stdout`/:attr:`stderr`, then :meth:`wait` for it."""

    def __init__(self, popen: subprocess.Popen, limits: Limits, temp_dir: str | None, *,
                 bwrap: bool) -> None:
        self.popen = popen
        self._bwrap = bwrap
        self.stdout: IO[bytes] | None = popen.stdout
        self.stderr: IO[bytes] | None = popen.stderr
        self.pid = popen.pid
        self._started = time.monotonic()
        self._limits = limits
        self._temp_dir = temp_dir
        self._lock = threading.Lock()
        self._reaped = False
        self._killed = False  # by kill(), before the helper ended
        self._limit: str | None = None
        self._done = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="pcnet-sandbox-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def kill(self, limit: str | None = None) -> None:
        """Kill the helper's whole process group now; *limit* says why (kept if first)."""
        self._kill(limit, by_us=True)

    def _kill(self, limit: str | None, *, by_us: bool) -> None:
        with self._lock:
            if self._limit is None:
                self._limit = limit
            if not self._reaped:
                self._killed = self._killed or by_us
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait(self) -> Outcome:
        """Wait for the helper to end; kill anything left of its group; say how it ended."""
        try:
            while True:
                try:
                    # Wait without reaping: while the leader is a zombie its group id cannot be
                    # reused, so the group can still be killed safely.
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
            self._kill(None, by_us=False)  # stragglers of the group, if any
            with self._lock:
                try:
                    _, status = os.waitpid(self.pid, 0)
                    returncode = os.waitstatus_to_exitcode(status)
                except ChildProcessError:  # reaped elsewhere
                    returncode = self.popen.returncode or 0
                self._reaped = True
                self.popen.returncode = returncode
        finally:
            self._done.set()
            if self._watchdog is not threading.current_thread():
                self._watchdog.join()
        elapsed = time.monotonic() - self._started
        if self._bwrap and 128 < returncode < 128 + signal.NSIG:
            returncode = 128 - returncode  # bwrap reports a child killed by a signal as 128 + it
        limit = self._limit
        if limit is None and returncode == -signal.SIGXCPU:
            limit = "cpu"
        elif limit is None and returncode == -signal.SIGKILL and not self._killed:
            # Not killed by us: by the kernel, at the hard CPU limit (a single-threaded helper
            # cannot use more CPU than time has passed) or else by the out-of-memory killer.
            limit = "cpu" if elapsed >= self._limits.cpu_seconds else "memory"
        elif limit is None and returncode == -signal.SIGXFSZ:
            limit = "output"
        return Outcome(returncode=returncode, limit=limit, seconds=elapsed)

    def _watch(self) -> None:
        deadline = time.monotonic() + self._limits.timeout
        temp_bytes = self._limits.temp_mb * 1024 * 1024
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill("time")
                return
            step = min(left, _POLL_SECONDS) if self._temp_dir else left
            if self._done.wait(step):
                return
            if self._temp_dir and _tree_size(self._temp_dir) > temp_bytes:
                self.kill("output")
                return


def _tree_size(path: str) -> int:
    """Bytes under *path* (a directory count over the limit counts as infinitely big)."""
    total = 0
    entries = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entries > _MAX_TEMP_ENTRIES:
                        return 1 << 62
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total
