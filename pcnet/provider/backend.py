"""The pcnet CUPS backend: the wrapper CUPS runs for every job on a queue whose device URI is
`pcnet:<original-uri>`.

It copies the job's data to a spool file, asks the local Print Provider over a Unix socket what
to do (one JSON line out, one JSON line back), and then runs the queue's original backend on the
spool file (print), or ends with an exit status that makes CUPS cancel the job (deny, cancel) or
hold it (hold). It is a short-lived program started by cupsd, so it is plain blocking Python with
the standard library only: no reactor, nothing slow to import.

The one rule above all others: pcnet never stops a queue. CUPS's default error policy turns a
backend's "failed" status (1), an unknown status and a crash into a stopped printer, so every
failure of pcnet's own ends in HOLD (the job waits for an administrator, nothing is lost) or
RETRY_CURRENT (CUPS runs the job again at once; used while the provider is unreachable, after
this backend has already waited for it a while). See docs/cups.md.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from pcnet.errors import ConfigError, InvalidInput, PcnetError


class Status(enum.IntEnum):
    """CUPS backend exit statuses (cups/backend.h, backend(7)). The one place pcnet names them."""

    OK = 0  # job printed
    FAILED = 1  # the queue's error policy applies; by default that STOPS the queue
    AUTH_REQUIRED = 2  # job held until authentication information is supplied
    HOLD = 3  # job held indefinitely (job-hold-until=indefinite) until someone releases it
    STOP = 4  # the queue is stopped, the job stays pending
    CANCEL = 5  # job cancelled (IPP job-state 7, reason canceled-at-device), queue goes on
    RETRY = 6  # job held for JobRetryInterval, aborted after JobRetryLimit tries
    RETRY_CURRENT = 7  # job pending again and restarted immediately on the same queue


SCHEME = "pcnet"
URI_PREFIX = SCHEME + ":"
DISCOVERY_LINE = 'network pcnet "Unknown" "pcnet print management (device URI pcnet:<original URI>)"'

# Environment variables (CUPS passes only its own and those named by SetEnv/PassEnv in
# cups-files.conf to a backend; the installed launcher may also bake in defaults).
ENV_SOCKET = "PCNET_PROVIDER_SOCKET"
ENV_SPOOL_DIR = "PCNET_SPOOL_DIR"
ENV_REPLY_TIMEOUT = "PCNET_PROVIDER_TIMEOUT"
ENV_PROVIDER_WAIT = "PCNET_PROVIDER_WAIT"
ENV_BACKEND_DIR = "PCNET_BACKEND_DIR"
ENV_BACKEND_USER = "PCNET_BACKEND_USER"

DEFAULT_SOCKET = "/run/pcnet/provider.sock"
DEFAULT_SPOOL_DIR = "/var/spool/pcnet"
DEFAULT_REPLY_TIMEOUT = 300.0  # the provider analyses the spool file before it replies
DEFAULT_PROVIDER_WAIT = 30.0  # how long to keep trying to reach the provider before RETRY_CURRENT
DEFAULT_BACKEND_DIR = "/usr/lib/cups/backend"
DEFAULT_BACKEND_USER = "lp"  # cups-files.conf `User`, which CUPS does not pass to backends

ACTIONS = frozenset({"print", "deny", "hold", "cancel"})
MAX_REPLY_BYTES = 64 * 1024
MAX_MESSAGE = 1000  # CUPS_MAX_MESSAGE is 2048 with the prefix; stay well below
_CONNECT_TIMEOUT = 5.0
_RECONNECT_INTERVAL = 1.0
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


class ProviderUnavailable(PcnetError):
    """The Print Provider cannot be reached, or did not answer in time. The job is kept."""

    code = "provider_unavailable"


class ProviderProtocolError(PcnetError):
    """The Print Provider answered something that is not a valid decision."""

    code = "provider_protocol"


class _Terminated(BaseException):
    """SIGTERM from cupsd (job cancelled, held or moved, or cupsd stopping)."""


@dataclass(frozen=True)
class BackendConfig:
    provider_socket: str
    spool_dir: str
    reply_timeout: float
    provider_wait: float
    backend_dir: str
    backend_user: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BackendConfig:
        serverbin = environ.get("CUPS_SERVERBIN")
        backend_dir = environ.get(ENV_BACKEND_DIR) or (
            os.path.join(serverbin, "backend") if serverbin else DEFAULT_BACKEND_DIR
        )
        return cls(
            provider_socket=environ.get(ENV_SOCKET) or DEFAULT_SOCKET,
            spool_dir=environ.get(ENV_SPOOL_DIR) or DEFAULT_SPOOL_DIR,
            reply_timeout=_seconds(environ, ENV_REPLY_TIMEOUT, DEFAULT_REPLY_TIMEOUT),
            provider_wait=_seconds(environ, ENV_PROVIDER_WAIT, DEFAULT_PROVIDER_WAIT),
            backend_dir=backend_dir,
            backend_user=environ.get(ENV_BACKEND_USER) or DEFAULT_BACKEND_USER,
        )


def _seconds(environ: Mapping[str, str], key: str, default: float) -> float:
    raw = environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"environment {key}={raw!r}: expected a number of seconds >= 0")
    return value


@dataclass(frozen=True)
class Job:
    """What CUPS tells a backend about one job (argv and environment)."""

    job_id: int
    user: str
    title: str
    copies: int
    options: str
    file: str | None  # argv[6]: the document on a raw queue; None when the data is on stdin
    queue: str
    device_uri: str  # the original device URI, without the pcnet: prefix
    content_type: str
    final_content_type: str | None

    @classmethod
    def from_cups(cls, argv: Sequence[str], environ: Mapping[str, str]) -> Job:
        if len(argv) not in (6, 7):
            raise InvalidInput(
                "usage: pcnet job-id user title copies options [file] "
                "(run by CUPS, with DEVICE_URI=pcnet:<original-uri>)"
            )
        try:
            job_id = int(argv[1])
            copies = int(argv[4])
        except ValueError:
            raise InvalidInput(
                f"job id {argv[1]!r} and copies {argv[4]!r} must be integers"
            ) from None
        device_uri = environ.get("DEVICE_URI", "")
        if not device_uri.startswith(URI_PREFIX):
            raise ConfigError(
                f"DEVICE_URI {printable_uri(device_uri)!r} does not start with {URI_PREFIX!r}: "
                "wrap the queue with `pcnet cups wrap QUEUE`"
            )
        original = device_uri[len(URI_PREFIX):]
        check_target_uri(original)
        return cls(
            job_id=job_id,
            user=argv[2],
            title=argv[3],
            copies=copies,
            options=argv[5],
            file=argv[6] if len(argv) == 7 else None,
            queue=environ.get("PRINTER", ""),
            device_uri=original,
            content_type=environ.get("CONTENT_TYPE", ""),
            final_content_type=environ.get("FINAL_CONTENT_TYPE"),
        )


@dataclass(frozen=True)
class Decision:
    action: str  # one of ACTIONS
    reason: str = ""
    device_uri: str | None = None  # Find-Me: print to this device instead

    @classmethod
    def from_line(cls, line: bytes) -> Decision:
        try:
            reply = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ProviderProtocolError(f"provider reply is not JSON: {e}") from None
        if not isinstance(reply, dict):
            raise ProviderProtocolError("provider reply is not a JSON object")
        action = reply.get("action")
        if action not in ACTIONS:
            raise ProviderProtocolError(f"provider reply has an unknown action {action!r}")
        reason = reply.get("reason") or ""
        if not isinstance(reason, str):
            raise ProviderProtocolError("provider reply's reason is not a string")
        uri = reply.get("device_uri") or None
        if uri is not None:
            if not isinstance(uri, str):
                raise ProviderProtocolError("provider reply's device_uri is not a string")
            check_target_uri(uri)
        return cls(action=action, reason=reason, device_uri=uri)


def printable_uri(uri: str) -> str:
    """The URI without user:password@, fit for logs, argv[0] and the provider."""
    return _USERINFO_RE.sub(r"\1", uri)


def check_target_uri(uri: str) -> str:
    """Check that `uri` names a real backend we may run; return its scheme."""
    scheme = uri.split(":", 1)[0]
    if ":" not in uri or not _SCHEME_RE.match(scheme):
        raise ConfigError(f"device URI {printable_uri(uri)!r} has no valid scheme")
    if scheme.lower() == SCHEME:
        raise ConfigError(f"device URI {printable_uri(uri)!r} would run the pcnet backend again")
    return scheme


class _Messages:
    """CUPS reads `LEVEL: text` lines from a backend's stderr (backend(7), filter(7))."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def _write(self, level: str, text: str) -> None:
        text = " ".join(str(text).split())[:MAX_MESSAGE]
        try:
            self._stream.write(f"{level}: {text}\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # cupsd went away; nothing to tell

    def error(self, text: str) -> None:
        self._write("ERROR", text)

    def info(self, text: str) -> None:
        self._write("INFO", text)

    def debug(self, text: str) -> None:
        self._write("DEBUG", text)


def main(
    argv: Sequence[str],
    environ: Mapping[str, str],
    stdin: IO,
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    """Run the backend as CUPS does: returns the CUPS backend exit status (a `Status`)."""
    log = _Messages(stderr)
    if len(argv) <= 1:
        # Device discovery (lpinfo -v, cups-deviced): one line, touch nothing.
        stdout.write(DISCOVERY_LINE + "\n")
        stdout.flush()
        return Status.OK
    try:
        return _run_job(argv, environ, stdin, log)
    except _Terminated:
        # cupsd has already set the job's new state (cancelled, held, pending); it ignores the
        # status then. RETRY_CURRENT is the answer that loses nothing if it ever does not.
        log.info("pcnet: stopped by CUPS")
        return Status.RETRY_CURRENT
    except ProviderUnavailable as e:
        # Provider down (no socket, refused, no answer in time): RETRY_CURRENT, not HOLD. CUPS
        # puts the job back to pending and starts it again at once, so the job prints by
        # itself, in order, as soon as the provider is back, and the queue is never stopped.
        # HOLD would need someone to release every job held during the outage; RETRY (6)
        # aborts the job after JobRetryLimit tries. CUPS adds no delay before the restart, so
        # _connect() has already waited provider_wait seconds (default 30) before we get here.
        log.error(f"pcnet: {e.message}; the job is kept and CUPS will retry it")
        return Status.RETRY_CURRENT
    except PcnetError as e:
        # A broken set-up or a broken reply will not mend itself by retrying: hold the job
        # (nothing lost, no busy loop, the queue goes on); an administrator releases it.
        log.error(f"pcnet: {e.message}; the job is held")
        _drain(argv, stdin)
        return Status.HOLD
    except Exception as e:  # a bug: still never stop the queue
        log.error(f"pcnet: internal error {type(e).__name__}: {e}; the job is held")
        for line in traceback.format_exc().splitlines():
            log.debug(line)
        _drain(argv, stdin)
        return Status.HOLD


def _drain(argv: Sequence[str], stdin: IO) -> None:
    """Read what the filters still send before giving up on a job: a filter that checks its
    writes would fail on the closed pipe, and CUPS stops a job whose filter failed rather than
    holding it. (pstops does not check; others may.)"""
    if len(argv) != 6:
        return
    try:
        source = getattr(stdin, "buffer", stdin)
        while source.read(1 << 20):
            pass
    except Exception:
        pass


def _run_job(argv: Sequence[str], environ: Mapping[str, str], stdin: IO, log: _Messages) -> int:
    config = BackendConfig.from_environ(environ)
    job = Job.from_cups(argv, environ)
    spool = spool_job(job, stdin, config.spool_dir)
    try:
        decision = ask_provider(config, job, spool, log)
        reason = f": {decision.reason}" if decision.reason else ""
        if decision.action == "print":
            uri = decision.device_uri or job.device_uri
            if decision.device_uri:
                log.info(f"pcnet: job {job.job_id} redirected to {printable_uri(uri)}{reason}")
            return run_original_backend(config, job, uri, spool, environ, log)
        if decision.action == "hold":
            log.info(f"pcnet: job {job.job_id} held{reason}")
            return Status.HOLD
        # deny and cancel: the job goes, the queue goes on.
        what = "denied" if decision.action == "deny" else "cancelled"
        log.info(f"pcnet: job {job.job_id} {what}{reason}")
        return Status.CANCEL
    finally:
        _remove(spool)


def spool_job(job: Job, stdin: IO, spool_dir: str) -> str:
    """Copy the job's data (argv[6], or stdin on a queue with filters) to a new spool file."""
    try:
        # Users' documents: only root (this backend and the provider) reads them; the
        # analysis sandbox gets its own link or copy (docs/cups.md).
        if not os.path.isdir(spool_dir):
            os.makedirs(spool_dir, mode=0o700, exist_ok=True)
            os.chmod(spool_dir, 0o700)   # makedirs' mode is masked by the umask
        safe_queue = re.sub(r"[^A-Za-z0-9_.-]", "_", job.queue) or "queue"
        fd, path = tempfile.mkstemp(prefix=f"{safe_queue}-{job.job_id}-", suffix=".spool",
                                    dir=spool_dir)
    except OSError as e:
        raise ConfigError(f"cannot create a spool file in {spool_dir}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            if job.file is not None:
                with open(job.file, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            else:
                shutil.copyfileobj(getattr(stdin, "buffer", stdin), out, 1 << 20)
    except OSError as e:
        _remove(path)
        raise ConfigError(f"cannot write spool file {path}: {e.strerror or e}") from None
    except BaseException:
        _remove(path)
        raise
    return path


def job_message(job: Job, spool: str) -> dict:
    """The one line sent to the provider (docs/cups.md)."""
    return {
        "op": "job",
        "queue": job.queue,
        "job_id": job.job_id,
        "user": job.user,
        "title": job.title,
        "copies": job.copies,
        "options": job.options,
        "spool": spool,
        "device_uri": printable_uri(job.device_uri),
        "content_type": job.content_type,
        "final_content_type": job.final_content_type,
        "stdin": job.file is None,  # False: the document as submitted (argv[6])
    }


def ask_provider(config: BackendConfig, job: Job, spool: str, log: _Messages) -> Decision:
    sock = _connect(config, log)
    try:
        line = (json.dumps(job_message(job, spool), separators=(",", ":")) + "\n").encode()
        deadline = time.monotonic() + config.reply_timeout
        try:
            sock.settimeout(max(config.reply_timeout, 0.001))
            sock.sendall(line)
            reply = _read_line(sock, deadline)
        except TimeoutError:
            raise ProviderUnavailable(
                f"print provider at {config.provider_socket} did not answer within "
                f"{config.reply_timeout:g} s"
            ) from None
        except OSError as e:
            raise ProviderUnavailable(
                f"lost the print provider at {config.provider_socket}: {e.strerror or e}"
            ) from None
    finally:
        sock.close()
    if reply is None:
        raise ProviderUnavailable(
            f"print provider at {config.provider_socket} closed the connection without a decision"
        )
    return Decision.from_line(reply)


def _connect(config: BackendConfig, log: _Messages) -> socket.socket:
    # The provider may be restarting: keep trying for provider_wait seconds before handing the
    # job back to CUPS, which restarts a RETRY_CURRENT job at once (no delay of its own).
    deadline = time.monotonic() + config.provider_wait
    told = False
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_CONNECT_TIMEOUT)
            sock.connect(config.provider_socket)
            return sock
        except OSError as e:
            sock.close()
            error = e
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = "timed out" if isinstance(error, (socket.timeout, TimeoutError)) else (
                error.strerror or str(error))
            raise ProviderUnavailable(
                f"cannot reach the print provider at {config.provider_socket}: {reason}"
            )
        if not told:
            log.info(f"pcnet: waiting for the print provider at {config.provider_socket}")
            told = True
        time.sleep(min(_RECONNECT_INTERVAL, remaining))


def _read_line(sock: socket.socket, deadline: float) -> bytes | None:
    buf = bytearray()
    while True:
        newline = buf.find(b"\n")
        if newline >= 0:
            return bytes(buf[:newline])
        if len(buf) > MAX_REPLY_BYTES:
            raise ProviderProtocolError(f"provider reply is longer than {MAX_REPLY_BYTES} bytes")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError()
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(buf) if buf.strip() else None
        buf += chunk


def run_original_backend(
    config: BackendConfig,
    job: Job,
    uri: str,
    spool: str,
    environ: Mapping[str, str],
    log: _Messages,
) -> int:
    """Run the original backend on the spool file and return its exit status unchanged: a
    failure of the printer itself is the queue's business (its error policy), as without pcnet."""
    scheme = check_target_uri(uri)
    program = os.path.join(config.backend_dir, scheme)
    try:
        mode = os.stat(program).st_mode
    except OSError:
        raise ConfigError(f"no CUPS backend {program} for {printable_uri(uri)!r}") from None
    if not stat.S_ISREG(mode) or not os.access(program, os.X_OK):
        raise ConfigError(f"CUPS backend {program} is not an executable file")
    # From stdin the original backend would have printed one copy (the filters made the
    # copies); given a file, CUPS backends send argv[4] copies. Keep what it would have done.
    copies = str(job.copies) if job.file is not None else "1"
    env = dict(environ)
    env["DEVICE_URI"] = uri
    kwargs: dict = {}
    data_fd = None
    document = spool
    # cupsd runs a backend as root only when it lacks world read+execute (backend(7)); run the
    # original backend with the privileges cupsd would have given it. That user cannot search
    # the spool directory, so it gets the file as an inherited descriptor named /dev/fd/N
    # (opening it re-opens the same file, checking only the file's own permissions).
    if os.geteuid() == 0 and (mode & (stat.S_IROTH | stat.S_IXOTH)) == (stat.S_IROTH | stat.S_IXOTH):
        try:
            account = pwd.getpwnam(config.backend_user)
        except KeyError:
            raise ConfigError(f"{ENV_BACKEND_USER}: no user {config.backend_user!r}") from None
        os.chown(spool, account.pw_uid, account.pw_gid)
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
        opened = os.open(spool, os.O_RDONLY)
        # Above 4: descriptors 3 and 4 are CUPS's back- and side-channel.
        data_fd = fcntl.fcntl(opened, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(opened)
        document = f"/dev/fd/{data_fd}"
    argv = [printable_uri(uri), str(job.job_id), job.user, job.title, copies, job.options,
            document]
    log.debug(f"pcnet: running {program} for {printable_uri(uri)}")
    try:
        child = subprocess.Popen(
            argv,
            executable=program,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=_open_fds(3, 4) + ((data_fd,) if data_fd is not None else ()),
            **kwargs,
        )
        with _forward_sigterm(child):
            status = child.wait()
    finally:
        if data_fd is not None:
            os.close(data_fd)
    if status == -signal.SIGTERM:
        # cupsd is cancelling, holding or moving the job (it signals the process group, and we
        # pass SIGTERM on too); it has decided the job's state and ignores this status.
        log.info(f"pcnet: backend {scheme} stopped by CUPS")
        return Status.RETRY_CURRENT
    if status < 0:
        # A crash: CUPS would treat it like FAILED and stop the queue.
        log.error(f"pcnet: backend {scheme} killed by signal {-status}; the job is held")
        return Status.HOLD
    return status


def _open_fds(*fds: int) -> tuple[int, ...]:
    open_fds = []
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError:
            continue
        open_fds.append(fd)
    return tuple(open_fds)


class _forward_sigterm:
    """While the original backend runs, pass cupsd's SIGTERM on to it (cupsd only signals the
    processes it started) and let it end the job its own way."""

    _NOT_INSTALLED = object()

    def __init__(self, child: subprocess.Popen):
        self._child = child
        self._previous = self._NOT_INSTALLED

    def _handler(self, signum, frame):
        if self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread (tests): nothing to forward
            self._previous = self._NOT_INSTALLED
        return self

    def __exit__(self, *exc):
        if self._previous is not self._NOT_INSTALLED:
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
        return False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def run() -> int:
    """Entry point of the installed launcher: the process-wide parts, then `main`."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    return int(main(sys.argv, os.environ, sys.stdin.buffer, sys.stdout, sys.stderr))
