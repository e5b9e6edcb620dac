"""CUPS administration for the Print Provider: install the pcnet backend, wrap and unwrap queues
(device URI `socket://...` <-> `pcnet:socket://...`), list queues, and the job control the
provider needs (hold, release, cancel, state). Also the `pcnet cups ...` console commands.

Everything talks to cupsd through pycups. A `cups.Connection` is blocking and its default server
is process-global (per thread), so callers pass the connection in and make it with `connect()`,
which names the server explicitly: a Unix socket path or host[:port]. In a reactor, run these
functions in a thread, one connection per thread.
"""

from __future__ import annotations

import enum
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pcnet
from pcnet.errors import Conflict, Forbidden, InvalidInput, NotFound, PcnetError
from pcnet.provider.backend import (
    ENV_BACKEND_USER,
    ENV_PROVIDER_WAIT,
    ENV_REPLY_TIMEOUT,
    ENV_SOCKET,
    ENV_SPOOL_DIR,
    SCHEME,
    URI_PREFIX,
    Status,
    printable_uri,
)

DEFAULT_BACKEND_DIR = "/usr/lib/cups/backend"
BACKEND_MODE = 0o700  # cupsd runs a backend without world read+execute as root (backend(7))

# Defaults a launcher may carry (os.environ.setdefault); cups-files.conf SetEnv still wins.
LAUNCHER_ENV_KEYS = frozenset(
    {ENV_SOCKET, ENV_SPOOL_DIR, ENV_REPLY_TIMEOUT, ENV_PROVIDER_WAIT, ENV_BACKEND_USER}
)


class CupsError(PcnetError):
    """cupsd refused a request or cannot be reached."""

    code = "cups"
    http_status = 502


class JobState(enum.IntEnum):
    """IPP job-state (RFC 8011 5.3.7)."""

    PENDING = 3
    HELD = 4
    PROCESSING = 5
    STOPPED = 6
    CANCELED = 7
    ABORTED = 8
    COMPLETED = 9

    @property
    def finished(self) -> bool:
        return self >= JobState.CANCELED


@dataclass(frozen=True)
class Queue:
    name: str
    device_uri: str
    wrapped: bool
    info: str
    location: str
    make_and_model: str

    @property
    def original_uri(self) -> str:
        return self.device_uri[len(URI_PREFIX):] if self.wrapped else self.device_uri


# --- connections and errors -------------------------------------------------------------------


def _cups():
    try:
        import cups
    except ImportError:
        raise CupsError(
            "pycups is not installed: `pip install pycups` (needs libcups2-dev to build)"
        ) from None
    return cups


def connect(server: str | None = None):
    """A `cups.Connection` to `server`: a Unix socket path (`/run/cups/cups.sock`), `host` or
    `host:port`; None for the CUPS default (CUPS_SERVER, client.conf, the local socket).
    As root over the local socket, administrative requests need no password."""
    cups = _cups()
    kwargs: dict = {}
    if server:
        kwargs.update(_split_server(server))
    try:
        return cups.Connection(**kwargs)
    except RuntimeError as e:
        where = server or cups.getServer()
        raise CupsError(f"cannot connect to CUPS at {where}: {e}") from None


def _split_server(server: str) -> dict:
    """`/path/to.sock`, `host`, `host:port`, `[v6]:port` -> cups.Connection keyword arguments."""
    if server.startswith("/"):
        return {"host": server}
    host, port = server, ""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.removeprefix(":")
    elif server.count(":") == 1:
        host, port = server.split(":")
    if not host or (port and not port.isdigit()):
        raise InvalidInput(f"CUPS server {server!r}: expected a socket path or host[:port]")
    return {"host": host, "port": int(port)} if port else {"host": host}


def _call(what: str, fn, *args, **kwargs):
    """Run one pycups call; turn its exceptions into one-line PcnetErrors."""
    cups = _cups()
    try:
        return fn(*args, **kwargs)
    except cups.IPPError as e:
        status, message = (e.args + (None, None))[:2]
        text = f"{what}: {message or f'IPP status {status}'}"
        if status == cups.IPP_NOT_FOUND:
            raise NotFound(text) from None
        if status in (cups.IPP_FORBIDDEN, cups.IPP_NOT_AUTHORIZED, cups.IPP_NOT_AUTHENTICATED):
            raise Forbidden(f"{text} (run as root, or as a member of CUPS's SystemGroup)") from None
        if status == cups.IPP_NOT_POSSIBLE:
            raise Conflict(text) from None
        raise CupsError(text) from None
    except cups.HTTPError as e:
        status = e.args[0] if e.args else None
        if status in (cups.HTTP_UNAUTHORIZED, cups.HTTP_FORBIDDEN):
            raise Forbidden(
                f"{what}: CUPS refused (HTTP {status}); run as root over the local socket"
            ) from None
        raise CupsError(f"{what}: HTTP error {status}") from None
    except RuntimeError as e:
        raise CupsError(f"{what}: {e}") from None


# --- the backend ------------------------------------------------------------------------------


def launcher_text(python: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The installed backend: a few lines with the interpreter's absolute path in the shebang.
    Python runs isolated (-I: no PYTHONPATH, no user site) because it runs as root."""
    if not os.path.isabs(python) or re.search(r"\s", python):
        raise InvalidInput(f"python {python!r}: need an absolute path without spaces")
    source_root = str(Path(pcnet.__file__).resolve().parent.parent)
    env_lines = []
    for key, value in sorted((environ or {}).items()):
        if key not in LAUNCHER_ENV_KEYS:
            raise InvalidInput(f"launcher environment: unknown key {key!r}")
        env_lines.append(f"os.environ.setdefault({key!r}, {str(value)!r})\n")
    return (
        f"#!{python} -I\n"
        f"{LAUNCHER_MARK}. CUPS runs it (as root: mode 0700)\n"
        "# for every job on a queue whose device URI is pcnet:<original-uri>. See docs/cups.md.\n"
        "import os\n"
        "import sys\n"
        f"sys.path.insert(0, {source_root!r})\n"
        + "".join(env_lines)
        + "try:\n"
        "    from pcnet.provider.backend import run\n"
        "except BaseException as e:  # never let CUPS see status 1: it would stop the queue\n"
        '    sys.stderr.write("ERROR: pcnet backend cannot start: %s: %s\\n" % (type(e).__name__, e))\n'
        f"    sys.exit({int(Status.HOLD)} if len(sys.argv) > 1 else 1)\n"
        "sys.exit(run())\n"
    )


def install_backend(
    backend_dir: str | os.PathLike = DEFAULT_BACKEND_DIR,
    python: str = sys.executable,
    *,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Write the launcher as `<backend_dir>/pcnet`, mode 0700 (so cupsd runs it as root), atomically.
    `environ` bakes in defaults for PCNET_* settings. Returns the path written."""
    directory = Path(backend_dir)
    if not directory.is_dir():
        raise NotFound(f"CUPS backend directory {directory} does not exist (is CUPS installed?)")
    text = launcher_text(python, environ=environ)
    target = directory / SCHEME
    try:
        fd, tmp = tempfile.mkstemp(prefix=".pcnet-", dir=directory)
    except OSError as e:
        raise Forbidden(f"cannot write to {directory}: {e.strerror or e} (run as root)") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, BACKEND_MODE)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


# --- queues -----------------------------------------------------------------------------------


def list_queues(conn) -> list[Queue]:
    """The printers of this CUPS server, by name (classes have no device URI and are left out)."""
    cups = _cups()
    printers = _call("list queues", conn.getPrinters)
    queues = []
    for name, attrs in sorted(printers.items()):
        if int(attrs.get("printer-type", 0)) & cups.CUPS_PRINTER_CLASS:
            continue
        uri = attrs.get("device-uri", "")
        queues.append(
            Queue(
                name=name,
                device_uri=uri,
                wrapped=uri.startswith(URI_PREFIX),
                info=attrs.get("printer-info", ""),
                location=attrs.get("printer-location", ""),
                make_and_model=attrs.get("printer-make-and-model", ""),
            )
        )
    return queues


def get_queue(conn, queue: str) -> Queue:
    for q in list_queues(conn):
        if q.name == queue:
            return q
    raise NotFound(f"no CUPS queue {queue!r} (classes cannot be wrapped: wrap their printers)")


def wrap_queue(conn, queue: str) -> str:
    """Send `queue`'s jobs through pcnet: device URI X becomes pcnet:X. Idempotent. Returns the
    queue's device URI afterwards."""
    q = get_queue(conn, queue)
    if q.wrapped:
        return q.device_uri
    if not q.device_uri:
        raise Conflict(f"queue {queue!r} has no device URI to wrap")
    new_uri = URI_PREFIX + q.device_uri
    try:
        _call(f"wrap {queue}", conn.setPrinterDevice, queue, new_uri)
    except Conflict:
        # cupsd logs 'Bad device-uri scheme "pcnet"'; pycups only passes on the status.
        raise CupsError(
            f"wrap {queue}: CUPS refused the device URI {printable_uri(new_uri)!r}: the pcnet "
            "backend is not in CUPS's backend directory; run `pcnet cups install` first"
        ) from None
    return new_uri


def unwrap_queue(conn, queue: str) -> str:
    """Undo `wrap_queue`: pcnet:X becomes X again (repeated prefixes too). Idempotent."""
    q = get_queue(conn, queue)
    uri = q.device_uri
    while uri.startswith(URI_PREFIX):
        uri = uri[len(URI_PREFIX):]
    if uri != q.device_uri:
        _call(f"unwrap {queue}", conn.setPrinterDevice, queue, uri)
    return uri


# --- jobs -------------------------------------------------------------------------------------


def job_state(conn, job_id: int) -> JobState:
    attrs = _call(f"job {job_id}", conn.getJobAttributes, int(job_id),
                  requested_attributes=["job-id", "job-state"])
    return JobState(int(attrs["job-state"]))


def hold_job(conn, job_id: int) -> None:
    """Hold a pending job (job-hold-until=indefinite). A job that is printing is stopped and held."""
    _call(f"hold job {job_id}", conn.setJobHoldUntil, int(job_id), "indefinite")


def release_job(conn, job_id: int) -> JobState:
    """Release a held job, however it came to be held (hold_job, `lp -H hold`, or the pcnet
    backend's HOLD status): job-hold-until=no-hold makes cupsd release it, and it prints again
    through the backend. A stopped job (filter failure) is restarted. Returns the state after."""
    state = job_state(conn, job_id)
    if state == JobState.HELD:
        _call(f"release job {job_id}", conn.setJobHoldUntil, int(job_id), "no-hold")
    elif state == JobState.STOPPED:
        _call(f"restart job {job_id}", conn.restartJob, int(job_id))
    elif state.finished:
        raise Conflict(f"job {job_id} is {state.name.lower()}: nothing to release")
    return job_state(conn, job_id)


def cancel_job(conn, job_id: int, *, purge: bool = False) -> None:
    """Cancel a job (purge: also forget its files and history). A finished job is left alone."""
    state = job_state(conn, job_id)
    if state.finished and not purge:
        return
    _call(f"cancel job {job_id}", conn.cancelJob, int(job_id), purge_job=purge)


# --- console commands -------------------------------------------------------------------------

USAGE = """\
usage: pcnet cups [--server SERVER] COMMAND
  install [--backend-dir DIR] [--python PATH] [--socket PATH] [--spool-dir DIR]
                     write the pcnet CUPS backend (mode 0700) into CUPS's backend directory
  uninstall [--backend-dir DIR] [--force]
                     remove it again (refused while queues are wrapped, unless --force)
  wrap QUEUE...      send the queues' jobs through pcnet (device URI X becomes pcnet:X)
  unwrap QUEUE...    restore the queues' original device URIs
  list               show the queues and whether pcnet wraps them
SERVER is a Unix socket path or host[:port]; the default is CUPS's own (the local socket).
Run as root. Every failure is one line on stderr: status 1, or 2 for bad usage.
See docs/cups.md.
"""

#: The first line of every launcher `install` writes: what `uninstall` removes, and nothing else.
LAUNCHER_MARK = "# pcnet CUPS backend, written by `pcnet cups install`"


def cups_command(args: Sequence[str], out: IO[str], err: IO[str]) -> int:
    """`pcnet cups ...`: 0 on success, 1 on an error (one line on `err`), 2 on bad usage."""
    args = list(args)
    if not args or any(a in ("-h", "--help", "help") for a in args):
        (out if args else err).write(USAGE)
        return 0 if args else 2
    try:
        server = None
        while args and args[0].startswith("--server"):
            server, args = _option(args, "--server")
        if not args:
            raise InvalidInput("missing COMMAND")
        command, rest = args[0], args[1:]
        if command == "install":
            return _cmd_install(rest, out)
        if command == "uninstall":
            return _cmd_uninstall(rest, out, server)
        if command in ("wrap", "unwrap", "list"):
            if command == "list" and rest:
                raise InvalidInput(f"list takes no arguments, got {' '.join(rest)}")
            if command != "list" and (not rest or any(r.startswith("-") for r in rest)):
                raise InvalidInput(f"{command} needs one or more QUEUE names")
            conn = connect(server)
            if command == "list":
                _print_queues(list_queues(conn), out)
                return 0
            action = wrap_queue if command == "wrap" else unwrap_queue
            for queue in rest:
                uri = action(conn, queue)
                out.write(f"{queue}: {printable_uri(uri)}\n")
            return 0
        raise InvalidInput(f"unknown command {command!r}")
    except InvalidInput as e:
        err.write(f"pcnet cups: {e.message}\n{USAGE}")
        return 2
    except PcnetError as e:
        err.write(f"pcnet cups: {e.message}\n")
        return 1
    except OSError as e:
        err.write(f"pcnet cups: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}\n")
        return 1


def _option(args: list[str], name: str) -> tuple[str, list[str]]:
    head = args[0]
    if head.startswith(name + "="):
        value, rest = head[len(name) + 1:], args[1:]
    elif head == name and len(args) > 1:
        value, rest = args[1], args[2:]
    else:
        raise InvalidInput(f"{name} needs a value")
    if not value:
        raise InvalidInput(f"{name} needs a value")
    return value, rest


def _cmd_install(args: list[str], out: IO[str]) -> int:
    options = {"--backend-dir": DEFAULT_BACKEND_DIR, "--python": sys.executable}
    environ = {}
    names = {"--socket": ENV_SOCKET, "--spool-dir": ENV_SPOOL_DIR}
    while args:
        name = args[0].split("=", 1)[0]
        if name in options:
            options[name], args = _option(args, name)
        elif name in names:
            environ[names[name]], args = _option(args, name)
        else:
            raise InvalidInput(f"install: unknown argument {args[0]!r}")
    path = install_backend(options["--backend-dir"], options["--python"], environ=environ)
    out.write(f"installed {path} (mode {BACKEND_MODE:04o}, python {options['--python']})\n")
    if os.geteuid() != 0:
        out.write("note: cupsd runs the backend as root only if root owns it; install as root\n")
    return 0


def _cmd_uninstall(args: list[str], out: IO[str], server: str | None) -> int:
    backend_dir, force = DEFAULT_BACKEND_DIR, False
    while args:
        name = args[0].split("=", 1)[0]
        if name == "--backend-dir":
            backend_dir, args = _option(args, name)
        elif args[0] == "--force":
            force, args = True, args[1:]
        else:
            raise InvalidInput(f"uninstall: unknown argument {args[0]!r}")
    if not force:
        wrapped = [q.name for q in list_queues(connect(server)) if q.wrapped]
        if wrapped:
            raise Conflict(f"queues still send their jobs through pcnet: {', '.join(wrapped)};"
                           f" unwrap them first (pcnet cups unwrap {' '.join(wrapped)}), or use"
                           " --force (their jobs will then fail in CUPS)")
    path = uninstall_backend(backend_dir)
    out.write(f"removed {path}\n" if path else f"no pcnet backend in {backend_dir}: nothing to remove\n")
    return 0


def uninstall_backend(backend_dir: str) -> Path | None:
    """Remove the launcher `install_backend` wrote; None if there is none. A file of that name
    that pcnet did not write is refused (`Conflict`), never removed."""
    path = Path(backend_dir) / SCHEME
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except FileNotFoundError:
        return None
    if LAUNCHER_MARK not in head:
        raise Conflict(f"{path} was not written by `pcnet cups install`; not removing it")
    path.unlink()
    return path


def _print_queues(queues: list[Queue], out: IO[str]) -> None:
    if not queues:
        out.write("no queues\n")
        return
    rows = [("QUEUE", "PCNET", "DEVICE URI", "LOCATION", "INFO / MODEL")]
    for q in queues:
        rows.append((
            q.name,
            "yes" if q.wrapped else "no",
            printable_uri(q.original_uri),
            q.location,
            " / ".join(p for p in (q.info, q.make_and_model) if p),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] + "\n")
