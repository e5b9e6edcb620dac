"""Unit tests of the pcnet CUPS backend: `main()` called directly with a fake stdin, environment
and provider socket, and a fake "original" backend script; no cupsd (tests/integration has the
real one)."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pcnet.provider import backend
from pcnet.provider.backend import Status

DATA = b"%!PS-Adobe-3.0\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


class FakeProvider:
    """A Unix-socket server answering each job with `reply`: a dict (sent as one JSON line),
    raw bytes, None (close at once) or "hang" (read, never answer)."""

    def __init__(self, path: Path, reply=None):
        self.path = path
        self.reply = {"action": "print"} if reply is None else reply
        self.messages: list[dict] = []
        self.spool_seen: list[bytes | None] = []
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(4)
        self._server.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                buf = b""
                while b"\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                message = json.loads(buf.split(b"\n")[0])
                self.messages.append(message)
                try:
                    self.spool_seen.append(Path(message["spool"]).read_bytes())
                except OSError:
                    self.spool_seen.append(None)
                if self.reply == "hang":
                    self._stop.wait(10)
                elif self.reply == "close":
                    pass
                elif isinstance(self.reply, bytes):
                    conn.sendall(self.reply)
                else:
                    conn.sendall(json.dumps(self.reply).encode() + b"\n")

    def close(self):
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=5)


FAKE_BACKEND = """\
#!{python}
# A stand-in for a CUPS backend: records what it was given, exits with $FAKE_EXIT.
import json, os, sys
data = open(sys.argv[6], "rb").read() if len(sys.argv) > 6 else sys.stdin.buffer.read()
record = {{"argv": sys.argv[1:], "device_uri": os.environ.get("DEVICE_URI"),
          "uid": os.getuid(), "data": data.decode("latin-1")}}
with open(os.environ["FAKE_RECORD"] + "." + os.path.basename(sys.argv[0]) + ".json", "w") as f:
    json.dump(record, f)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def env(tmp_path):
    """A CUPS-like environment: spool dir, backend dir with a fake `fake` backend (mode 0700),
    provider socket path. Tests start the provider they need."""
    backend_dir = tmp_path / "backend"
    backend_dir.mkdir()
    for scheme in ("fake", "other"):
        script = backend_dir / scheme
        script.write_text(FAKE_BACKEND.format(python=sys.executable))
        script.chmod(0o700)
    return {
        "DEVICE_URI": "pcnet:fake://printer.example:9100/queue",
        "PRINTER": "lab-1",
        "CONTENT_TYPE": "application/postscript",
        "PCNET_PROVIDER_SOCKET": str(tmp_path / "provider.sock"),
        "PCNET_SPOOL_DIR": str(tmp_path / "spool"),
        "PCNET_BACKEND_DIR": str(backend_dir),
        "PCNET_PROVIDER_WAIT": "0",
        "PCNET_PROVIDER_TIMEOUT": "5",
        "FAKE_RECORD": str(tmp_path / "record"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


@pytest.fixture
def provider(env):
    providers = []

    def start(reply=None):
        p = FakeProvider(Path(env["PCNET_PROVIDER_SOCKET"]), reply)
        providers.append(p)
        return p

    yield start
    for p in providers:
        p.close()


def run_backend(env, *, argv=None, stdin=DATA, file: Path | None = None):
    argv = argv or ["pcnet", "42", "alice", "Quarterly report", "2", "media=A4"]
    if file is not None:
        argv = argv + [str(file)]
    out, err = io.StringIO(), io.StringIO()
    status = backend.main(argv, env, io.BytesIO(stdin), out, err)
    return status, out.getvalue(), err.getvalue()


def record(env, scheme="fake"):
    path = Path(f"{env['FAKE_RECORD']}.{scheme}.json")
    return json.loads(path.read_text()) if path.exists() else None


def spool_files(env):
    spool = Path(env["PCNET_SPOOL_DIR"])
    return sorted(spool.iterdir()) if spool.exists() else []


# --- discovery and statuses -------------------------------------------------------------------


def test_discovery_mode_prints_one_device_line_and_succeeds():
    out, err = io.StringIO(), io.StringIO()
    status = backend.main(["pcnet"], {}, io.BytesIO(), out, err)
    assert status == Status.OK == 0
    assert out.getvalue().startswith('network pcnet "Unknown" "')
    assert out.getvalue().count("\n") == 1
    assert err.getvalue() == ""


def test_status_values_are_those_of_cups_backend_h():
    assert [(s.name, int(s)) for s in Status] == [
        ("OK", 0), ("FAILED", 1), ("AUTH_REQUIRED", 2), ("HOLD", 3), ("STOP", 4),
        ("CANCEL", 5), ("RETRY", 6), ("RETRY_CURRENT", 7),
    ]


# --- print ------------------------------------------------------------------------------------


def test_print_from_stdin_sends_the_job_fields_and_runs_the_original_backend(env, provider):
    p = provider({"action": "print"})
    status, _, err = run_backend(env)
    assert status == Status.OK, err
    [message] = p.messages
    assert message == {
        "op": "job", "queue": "lab-1", "job_id": 42, "user": "alice",
        "title": "Quarterly report", "copies": 2, "options": "media=A4",
        "spool": message["spool"], "device_uri": "fake://printer.example:9100/queue",
        "content_type": "application/postscript", "final_content_type": None, "stdin": True,
    }
    assert Path(message["spool"]).parent == Path(env["PCNET_SPOOL_DIR"])
    assert p.spool_seen == [DATA]  # the spool file was complete and readable when asked
    rec = record(env)
    assert rec["data"].encode("latin-1") == DATA
    assert rec["device_uri"] == "fake://printer.example:9100/queue"
    # From stdin, the filters made the copies: the original backend must send one.
    assert rec["argv"][:5] == ["42", "alice", "Quarterly report", "1", "media=A4"]
    assert spool_files(env) == []  # removed after printing


def test_print_from_a_file_argument_keeps_copies(env, provider, tmp_path):
    doc = tmp_path / "d00042-001"
    doc.write_bytes(b"raw printer language")
    p = provider({"action": "print"})
    status, _, err = run_backend(env, file=doc, stdin=b"")
    assert status == Status.OK, err
    assert p.messages[0]["stdin"] is False
    assert p.spool_seen == [b"raw printer language"]
    rec = record(env)
    assert rec["argv"][3] == "2"  # a raw job: the backend makes the copies, as without pcnet
    assert rec["argv"][5] == p.messages[0]["spool"]
    assert rec["data"] == "raw printer language"
    assert doc.read_bytes() == b"raw printer language"  # CUPS's own file is left alone
    assert spool_files(env) == []


def test_the_original_backends_status_is_returned(env, provider):
    provider({"action": "print"})
    env["FAKE_EXIT"] = "6"
    status, _, _ = run_backend(env)
    assert status == Status.RETRY


def test_find_me_redirect_runs_the_backend_of_the_override_uri(env, provider):
    provider({"action": "print", "reason": "Find-Me", "device_uri": "other://b.example/q"})
    status, _, err = run_backend(env)
    assert status == Status.OK, err
    assert record(env, "fake") is None
    rec = record(env, "other")
    assert rec["device_uri"] == "other://b.example/q"
    assert "redirected to other://b.example/q" in err


def test_credentials_in_the_device_uri_are_not_given_away(env, provider):
    env["DEVICE_URI"] = "pcnet:fake://user:secret@printer.example/q"
    p = provider({"action": "print"})
    status, _, err = run_backend(env)
    assert status == Status.OK
    assert p.messages[0]["device_uri"] == "fake://printer.example/q"
    assert record(env)["device_uri"] == "fake://user:secret@printer.example/q"  # it needs them
    assert "secret" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_a_world_executable_backend_runs_as_the_cups_user_and_can_read_the_job(env, provider):
    # As cupsd would: a backend with world read+execute runs as `lp`, not root.
    base = Path(tempfile.mkdtemp(prefix="pcnet-unit-"))
    try:
        os.chmod(base, 0o755)
        backend_dir = base / "backend"
        backend_dir.mkdir(mode=0o755)
        script = backend_dir / "fake"
        script.write_text(FAKE_BACKEND.format(python="/usr/bin/python3"))
        script.chmod(0o755)
        records = base / "records"
        records.mkdir()
        records.chmod(0o777)
        env.update(PCNET_BACKEND_DIR=str(backend_dir), FAKE_RECORD=str(records / "r"))
        provider({"action": "print"})
        status, _, err = run_backend(env)
        assert status == Status.OK, err
        rec = json.loads((records / "r.fake.json").read_text())
        assert rec["uid"] == pwd.getpwnam("lp").pw_uid
        assert rec["data"].encode("latin-1") == DATA
        assert rec["argv"][5].startswith("/dev/fd/")
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- deny, cancel, hold -----------------------------------------------------------------------


@pytest.mark.parametrize("action, word", [("deny", "denied"), ("cancel", "cancelled")])
def test_deny_and_cancel_cancel_the_job_without_printing(env, provider, action, word):
    provider({"action": action, "reason": "Balance too low"})
    status, _, err = run_backend(env)
    assert status == Status.CANCEL == 5
    assert f"INFO: pcnet: job 42 {word}: Balance too low" in err
    assert record(env) is None
    assert spool_files(env) == []


def test_hold_holds_the_job_without_printing(env, provider):
    provider({"action": "hold", "reason": "release at a device"})
    status, _, err = run_backend(env)
    assert status == Status.HOLD == 3
    assert "held: release at a device" in err
    assert record(env) is None
    assert spool_files(env) == []


# --- the provider is unreachable: keep the job (RETRY_CURRENT) ----------------------------------


def test_no_provider_socket_keeps_the_job_for_a_retry(env):
    status, _, err = run_backend(env)
    assert status == Status.RETRY_CURRENT == 7
    assert "ERROR: pcnet: cannot reach the print provider" in err
    assert spool_files(env) == []


def test_waits_for_a_provider_that_comes_up(env):
    env["PCNET_PROVIDER_WAIT"] = "5"
    started = []
    timer = threading.Timer(0.5, lambda: started.append(
        FakeProvider(Path(env["PCNET_PROVIDER_SOCKET"]), {"action": "print"})))
    timer.start()
    try:
        t0 = time.monotonic()
        status, _, err = run_backend(env)
        assert status == Status.OK, err
        assert time.monotonic() - t0 < 4
        assert "waiting for the print provider" in err
    finally:
        timer.join()
        for p in started:
            p.close()


def test_gives_up_waiting_after_the_configured_time(env):
    env["PCNET_PROVIDER_WAIT"] = "1.2"
    t0 = time.monotonic()
    status, _, _ = run_backend(env)
    assert status == Status.RETRY_CURRENT
    assert 1.0 <= time.monotonic() - t0 < 4


def test_provider_that_does_not_answer_in_time_keeps_the_job(env, provider):
    env["PCNET_PROVIDER_TIMEOUT"] = "0.5"
    provider("hang")
    t0 = time.monotonic()
    status, _, err = run_backend(env)
    assert status == Status.RETRY_CURRENT
    assert time.monotonic() - t0 < 3
    assert "did not answer within 0.5 s" in err
    assert spool_files(env) == []


def test_provider_that_closes_without_a_decision_keeps_the_job(env, provider):
    provider("close")
    status, _, err = run_backend(env)
    assert status == Status.RETRY_CURRENT
    assert "without a decision" in err


# --- a broken provider, a broken set-up, a bug: HOLD, never FAILED or STOP -----------------------


@pytest.mark.parametrize("reply, complaint", [
    (b"this is not json\n", "not JSON"),
    (b"[1, 2]\n", "not a JSON object"),
    (b'{"action": "shred"}\n', "unknown action 'shred'"),
    (b'{"action": "print", "device_uri": "pcnet:fake://x"}\n', "would run the pcnet backend again"),
    (b'{"action": "print", "device_uri": "nothing here"}\n', "has no valid scheme"),
    (b'{"action": "hold", "reason": 5}\n', "reason is not a string"),
])
def test_a_bad_reply_holds_the_job(env, provider, reply, complaint):
    provider(reply)
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert complaint in err
    assert record(env) is None
    assert spool_files(env) == []


def test_an_oversized_reply_holds_the_job(env, provider):
    provider(b"x" * (backend.MAX_REPLY_BYTES + 10))
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert "longer than" in err


def test_unwritable_spool_directory_holds_the_job(env, provider, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env["PCNET_SPOOL_DIR"] = str(blocker / "spool")  # cannot be made, even by root
    p = provider({"action": "print"})
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert f"cannot create a spool file in {blocker / 'spool'}" in err
    assert p.messages == []


def test_missing_original_backend_holds_the_job(env, provider):
    env["DEVICE_URI"] = "pcnet:nosuch://printer"
    provider({"action": "print"})
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert "no CUPS backend" in err
    assert spool_files(env) == []


@pytest.mark.parametrize("uri", ["", "socket://printer:9100", "pcnet:pcnet:socket://x", "pcnet:"])
def test_a_device_uri_that_is_not_a_wrapped_one_holds_the_job(env, uri):
    env["DEVICE_URI"] = uri
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert err.startswith("ERROR: pcnet: ")


@pytest.mark.parametrize("key, value", [("PCNET_PROVIDER_TIMEOUT", "soon"),
                                        ("PCNET_PROVIDER_WAIT", "-1")])
def test_a_bad_setting_holds_the_job_and_names_the_setting(env, key, value):
    env[key] = value
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert key in err


@pytest.mark.parametrize("argv", [
    ["pcnet", "42", "alice"],
    ["pcnet", "forty-two", "alice", "title", "1", ""],
])
def test_bad_arguments_hold_instead_of_failing(env, argv):
    status, _, err = run_backend(env, argv=argv)
    assert status == Status.HOLD
    assert "ERROR:" in err


def test_an_unexpected_exception_is_reported_and_holds_the_job(env, provider):
    provider({"action": "print"})

    class BrokenStdin:
        def read(self, *args):
            raise ZeroDivisionError("boom")

    out, err = io.StringIO(), io.StringIO()
    status = backend.main(["pcnet", "42", "alice", "t", "1", ""], env, BrokenStdin(), out, err)
    assert status == Status.HOLD
    assert "ERROR: pcnet: internal error ZeroDivisionError: boom" in err.getvalue()
    assert "DEBUG: Traceback" in err.getvalue()
    assert spool_files(env) == []


def test_messages_to_cups_are_single_lines(env, provider):
    provider({"action": "deny", "reason": "line one\nline two\r\n" + "x" * 5000})
    status, _, err = run_backend(env)
    assert status == Status.CANCEL
    for line in err.splitlines():
        assert line.split(":", 1)[0] in ("INFO", "ERROR", "DEBUG")
        assert len(line) < 1100


def test_a_held_job_still_reads_all_of_stdin_so_the_filters_do_not_fail(env):
    env["PCNET_PROVIDER_TIMEOUT"] = "soon"
    stdin = io.BytesIO(DATA * 100)
    status = backend.main(["pcnet", "42", "alice", "t", "1", ""], env, stdin, io.StringIO(),
                          io.StringIO())
    assert status == Status.HOLD
    assert stdin.tell() == len(DATA) * 100


def test_an_original_backend_that_crashes_holds_the_job(env, provider):
    provider({"action": "print"})
    script = Path(env["PCNET_BACKEND_DIR"]) / "fake"
    script.write_text("#!/bin/sh\nkill -SEGV $$\n")
    status, _, err = run_backend(env)
    assert status == Status.HOLD
    assert "killed by signal 11" in err
    assert spool_files(env) == []


def test_an_original_backend_stopped_by_sigterm_is_not_an_error(env, provider):
    provider({"action": "print"})
    script = Path(env["PCNET_BACKEND_DIR"]) / "fake"
    script.write_text("#!/bin/sh\nkill -TERM $$\n")
    status, _, err = run_backend(env)
    assert status == Status.RETRY_CURRENT
    assert "INFO: pcnet: backend fake stopped by CUPS" in err
    assert "ERROR" not in err


def test_the_spool_directory_is_made_root_only_and_spool_files_owner_only(tmp_path):
    """Spool files are users' documents; only root (the backend and the provider) reads them,
    whatever the umask, so the directory is 0700 and its files 0600 (docs/cups.md)."""
    job = backend.Job(job_id=7, user="alice", title="t", copies=1, options="", file=None,
                      queue="lab", device_uri="socket://x", content_type="application/pdf",
                      final_content_type=None)
    spool_dir = tmp_path / "spool"
    old = os.umask(0)
    try:
        path = backend.spool_job(job, io.BytesIO(b"%PDF-1.4 ..."), str(spool_dir))
    finally:
        os.umask(old)
    assert oct(spool_dir.stat().st_mode & 0o777) == "0o700"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert Path(path).read_bytes() == b"%PDF-1.4 ..."
