"""The pcnet CUPS backend and cupsadmin against a real, private cupsd (cups_rig.py): jobs go
through the backend, a scripted fake Print Provider decides, AppSocket fake printers record
what they are sent."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time

import pytest
from cups_rig import GENERIC_POSTSCRIPT_PPD, FakeProvider, RigError, wait_until

from pcnet.errors import NotFound
from pcnet.provider import cupsadmin
from pcnet.provider.backend import DISCOVERY_LINE
from pcnet.provider.cupsadmin import CupsError, JobState

pytestmark = pytest.mark.integration

RAW_DOC = bytes(range(256)) * 40 + b"\x1b%-12345X@PJL END\r\n"
PS_DOC = b"""%!PS-Adobe-3.0
%%Pages: 1
%%EndComments
%%Page: 1 1
/Helvetica findfont 24 scalefont setfont 72 720 moveto (hello pcnet) show showpage
%%EOF
"""


def big_ps_doc(pages: int) -> bytes:
    body = b"".join(
        b"%%%%Page: %d %d\n/Helvetica findfont 12 scalefont setfont 72 720 moveto (page %d of a"
        b" long report, padded to make the filter output larger than a pipe buffer) show "
        b"showpage\n" % (n, n, n) for n in range(1, pages + 1))
    return b"%%!PS-Adobe-3.0\n%%%%Pages: %d\n%%%%EndComments\n" % pages + body + b"%%EOF\n"


FINISHED = [JobState.COMPLETED, JobState.CANCELED, JobState.ABORTED]
SETTLED = FINISHED + [JobState.HELD, JobState.STOPPED]


def make_queue(rig, name, *, model="raw", wrap=True):
    printer = rig.add_printer(name)
    rig.add_queue(name, printer.uri, model=model)
    if wrap:
        cupsadmin.wrap_queue(rig.connect(), name)
    return printer


def write_doc(rig, name, data):
    path = rig.root / name
    path.write_bytes(data)
    return path


# --- print ------------------------------------------------------------------------------------


def test_raw_job_reaches_the_printer_byte_for_byte_with_the_right_job_fields(cups_rig,
                                                                            fake_provider):
    printer = make_queue(cups_rig, "raw1")
    job = cups_rig.submit("raw1", write_doc(cups_rig, "report.bin", RAW_DOC),
                          title="Quarterly report", user="alice")
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    assert printer.wait_for(1) == [RAW_DOC]
    [message] = fake_provider.messages
    assert message["op"] == "job"
    assert message["queue"] == "raw1"
    assert message["job_id"] == job
    assert message["user"] == "alice"
    assert message["title"] == "Quarterly report"
    assert message["copies"] == 1
    assert message["device_uri"] == printer.uri
    assert message["content_type"] == "application/octet-stream"
    assert message["stdin"] is False
    assert message["spool"].startswith(str(cups_rig.pcnet_spool_dir) + "/")
    assert fake_provider.spooled == [RAW_DOC]  # readable, complete, when the provider asked
    assert not os.path.exists(message["spool"])  # removed once printed
    assert cups_rig.queue_is_running("raw1")


def test_raw_copies_are_made_by_the_original_backend_as_without_pcnet(cups_rig, fake_provider):
    printer = make_queue(cups_rig, "raw2")
    job = cups_rig.submit("raw2", write_doc(cups_rig, "a.bin", b"ABC\n"), copies=3)
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    assert fake_provider.messages[0]["copies"] == 3
    assert printer.wait_for(1) == [b"ABC\n" * 3]


def test_non_raw_queue_filters_run_and_the_backend_reads_stdin(cups_rig, fake_provider):
    printer = make_queue(cups_rig, "ps1", model=GENERIC_POSTSCRIPT_PPD)
    job = cups_rig.submit("ps1", write_doc(cups_rig, "doc.ps", PS_DOC), title="ps job",
                          user="bob", copies=2)
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    [received] = printer.wait_for(1)
    [message] = fake_provider.messages
    assert message["stdin"] is True
    assert message["content_type"] == "application/postscript"
    assert message["final_content_type"] == "application/vnd.cups-postscript"
    assert message["user"] == "bob" and message["copies"] == 2
    # pstops put the copies into the stream; the socket backend must send it once, not twice.
    assert fake_provider.spooled == [received]
    assert received.count(b"hello pcnet") == 1
    assert b"%%Requirements: numcopies(2)" in received or b"NumCopies 2" in received
    assert cups_rig.queue_is_running("ps1")


def test_a_raw_job_with_two_documents_is_decided_once(cups_rig, fake_provider):
    printer = make_queue(cups_rig, "raw3")
    a, b = write_doc(cups_rig, "a.bin", b"A" * 100), write_doc(cups_rig, "b.bin", b"B" * 50)
    out = cups_rig.run(["/usr/bin/lp", "-h", cups_rig.server, "-d", "raw3", str(a), str(b)])
    job = int(out.split("request id is ", 1)[1].split()[0].rsplit("-", 1)[1])
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    # CUPS feeds several documents through gziptoany to one backend run, on stdin.
    assert printer.wait_for(1) == [b"A" * 100 + b"B" * 50]
    assert len(fake_provider.messages) == 1 and fake_provider.messages[0]["stdin"] is True


def test_find_me_redirect_prints_on_the_other_printer(cups_rig, fake_provider):
    here = make_queue(cups_rig, "here")
    there = cups_rig.add_printer("there")
    fake_provider.answer("print", "released at the lobby printer", device_uri=there.uri)
    job = cups_rig.submit("here", write_doc(cups_rig, "d.bin", RAW_DOC))
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    assert there.wait_for(1) == [RAW_DOC]
    assert here.received() == []


# --- deny, hold, release ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["deny", "cancel"])
def test_denied_job_is_cancelled_nothing_prints_and_the_queue_goes_on(cups_rig, fake_provider,
                                                                      action):
    printer = make_queue(cups_rig, "q")
    fake_provider.answer(action, "not enough credit")
    job = cups_rig.submit("q", write_doc(cups_rig, "d.bin", RAW_DOC))
    # Backend status 5 (CUPS_BACKEND_CANCEL): IPP job-state 7 "canceled", not 8 "aborted".
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.CANCELED
    assert cups_rig.queue_is_running("q")
    assert printer.received() == []
    # The next job on the same queue prints.
    fake_provider.answer("print")
    job2 = cups_rig.submit("q", write_doc(cups_rig, "e.bin", b"next\n"))
    assert cups_rig.wait_for_job_state(job2, SETTLED) == JobState.COMPLETED
    assert printer.wait_for(1) == [b"next\n"]


def test_held_job_prints_after_release(cups_rig, fake_provider):
    printer = make_queue(cups_rig, "secure")
    fake_provider.answer("hold", "release at a device")
    job = cups_rig.submit("secure", write_doc(cups_rig, "d.bin", RAW_DOC))
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.HELD
    attrs = cups_rig.job(job)
    assert attrs["job-hold-until"] == "indefinite"
    assert cups_rig.queue_is_running("secure")
    time.sleep(0.5)
    assert printer.received() == []
    conn = cups_rig.connect()
    assert cupsadmin.job_state(conn, job) == JobState.HELD

    fake_provider.answer("print")
    cupsadmin.release_job(conn, job)
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    assert printer.wait_for(1) == [RAW_DOC]
    # CUPS ran the backend again: the provider was asked twice about the same job.
    assert [m["job_id"] for m in fake_provider.messages] == [job, job]
    assert os.listdir(cups_rig.pcnet_spool_dir) == []


def test_hold_release_and_cancel_helpers_on_a_pending_job(cups_rig, fake_provider):
    printer = make_queue(cups_rig, "q2")
    conn = cups_rig.connect()
    cups_rig.run(["/usr/sbin/cupsdisable", "-h", cups_rig.server, "q2"])  # keep jobs pending
    job = cups_rig.submit("q2", write_doc(cups_rig, "d.bin", b"x\n"))
    assert cupsadmin.job_state(conn, job) == JobState.PENDING
    cupsadmin.hold_job(conn, job)
    assert cupsadmin.job_state(conn, job) == JobState.HELD
    assert cupsadmin.release_job(conn, job) == JobState.PENDING
    cupsadmin.cancel_job(conn, job)
    assert cupsadmin.job_state(conn, job) == JobState.CANCELED
    cupsadmin.cancel_job(conn, job)  # again: nothing to do, no error
    with pytest.raises(Exception, match="nothing to release"):
        cupsadmin.release_job(conn, job)
    with pytest.raises(NotFound):
        cupsadmin.job_state(conn, 9999)
    assert printer.received() == []


def test_a_misconfigured_backend_holds_the_job_and_release_prints_it_once_fixed(cups_rig,
                                                                              fake_provider):
    printer = make_queue(cups_rig, "ps2", model=GENERIC_POSTSCRIPT_PPD)
    cups_rig.pcnet_spool_dir.write_text("")  # a file where the spool directory should be
    job = cups_rig.submit("ps2", write_doc(cups_rig, "doc.ps", big_ps_doc(pages=3000)))
    # HOLD (status 3), not "stopped for filter errors", though the filters' output is larger
    # than a pipe holds and the backend failed before spooling it.
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.HELD
    assert cups_rig.queue_is_running("ps2")
    assert fake_provider.messages == [] and printer.received() == []
    cups_rig.pcnet_spool_dir.unlink()
    cupsadmin.release_job(cups_rig.connect(), job)
    assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
    assert b"(page 3000 of a long report" in printer.wait_for(1)[0]


# --- the provider is down ---------------------------------------------------------------------


def test_provider_down_keeps_the_job_and_the_queue_then_prints_when_it_returns(cups_rig):
    printer = make_queue(cups_rig, "q")
    assert not cups_rig.provider_socket.exists()
    job = cups_rig.submit("q", write_doc(cups_rig, "d.bin", RAW_DOC))
    # Each attempt waits PCNET_PROVIDER_WAIT (1 s) and returns RETRY_CURRENT (7): CUPS puts
    # the job back to pending and starts it again at once.
    wait_until(lambda: cups_rig.error_log.read_text().count("Backend returned status 7") >= 2,
               15, "two RETRY_CURRENT attempts")
    assert cups_rig.job_state(job) in (JobState.PENDING, JobState.PROCESSING)
    assert cups_rig.queue_is_running("q")
    assert printer.received() == []

    provider = FakeProvider(cups_rig.provider_socket).start()
    try:
        assert cups_rig.wait_for_job_state(job, SETTLED) == JobState.COMPLETED
        assert printer.wait_for(1) == [RAW_DOC]
    finally:
        provider.stop()
    assert os.listdir(cups_rig.pcnet_spool_dir) == []


def test_a_job_waiting_for_the_provider_can_be_cancelled(cups_rig):
    make_queue(cups_rig, "q")
    job = cups_rig.submit("q", write_doc(cups_rig, "d.bin", RAW_DOC))
    wait_until(lambda: "waiting for the print provider" in cups_rig.error_log.read_text(),
               10, "the backend to wait for the provider")
    cupsadmin.cancel_job(cups_rig.connect(), job)
    assert cups_rig.wait_for_job_state(job, FINISHED, timeout=10) == JobState.CANCELED
    assert cups_rig.queue_is_running("q")
    wait_until(lambda: not os.path.exists(cups_rig.pcnet_spool_dir)
               or os.listdir(cups_rig.pcnet_spool_dir) == [], 10, "the spool file to go")


def test_cancelling_a_job_stops_the_original_backend_too(cups_rig, fake_provider):
    printer = make_queue(cups_rig, "jammed")
    printer.stall = True
    job = cups_rig.submit("jammed", write_doc(cups_rig, "d.bin", RAW_DOC))
    wait_until(lambda: "Waiting for printer to finish" in cups_rig.error_log.read_text(), 10,
               "the socket backend to wait for the jammed printer")
    assert len(cups_rig.job_processes()) == 2  # pcnet and the socket backend it runs
    cupsadmin.cancel_job(cups_rig.connect(), job)
    assert cups_rig.wait_for_job_state(job, FINISHED, timeout=10) == JobState.CANCELED
    # cupsd signals the backend's process group, and pcnet passes SIGTERM on to the backend it
    # runs as well: nothing is left talking to the printer.
    wait_until(lambda: cups_rig.job_processes() == [], 10, "both backends to end")
    assert "pcnet: backend socket stopped by CUPS" in cups_rig.error_log.read_text()
    assert cups_rig.queue_is_running("jammed")


# --- queues -----------------------------------------------------------------------------------


def test_wrap_and_unwrap_round_trip(cups_rig):
    printer = make_queue(cups_rig, "office", wrap=False)
    conn = cups_rig.connect()
    [queue] = cupsadmin.list_queues(conn)
    assert (queue.name, queue.device_uri, queue.wrapped) == ("office", printer.uri, False)
    assert queue.make_and_model == "Local Raw Printer"

    assert cupsadmin.wrap_queue(conn, "office") == "pcnet:" + printer.uri
    assert cupsadmin.wrap_queue(conn, "office") == "pcnet:" + printer.uri  # never twice
    [queue] = cupsadmin.list_queues(conn)
    assert queue.wrapped and queue.original_uri == printer.uri
    assert cups_rig.printer("office")["device-uri"] == "pcnet:" + printer.uri

    assert cupsadmin.unwrap_queue(conn, "office") == printer.uri
    assert cupsadmin.unwrap_queue(conn, "office") == printer.uri
    assert cups_rig.printer("office")["device-uri"] == printer.uri
    with pytest.raises(NotFound):
        cupsadmin.wrap_queue(conn, "no-such-queue")


def test_wrap_without_the_backend_installed_says_to_install_it(cups_rig):
    make_queue(cups_rig, "q", wrap=False)
    (cups_rig.backend_dir / "pcnet").unlink()
    with pytest.raises(CupsError, match="pcnet cups install"):
        cupsadmin.wrap_queue(cups_rig.connect(), "q")


def test_cups_command_list_wrap_unwrap(cups_rig):
    printer = make_queue(cups_rig, "lab", wrap=False)
    server = ["--server", cups_rig.server]

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        return cupsadmin.cups_command(server + list(args), out, err), out.getvalue(), err.getvalue()

    assert run("wrap", "lab") == (0, f"lab: pcnet:{printer.uri}\n", "")
    status, out, _ = run("list")
    assert status == 0
    assert out.splitlines()[0].split()[:2] == ["QUEUE", "PCNET"]
    assert out.splitlines()[1].split()[:3] == ["lab", "yes", printer.uri]
    assert run("unwrap", "lab") == (0, f"lab: {printer.uri}\n", "")
    status, out, err = run("wrap", "nope")
    assert (status, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("pcnet cups: ") and "nope" in err


def test_cups_command_errors_are_one_line():
    out, err = io.StringIO(), io.StringIO()
    assert cupsadmin.cups_command(["--server", "/nonexistent/cups.sock", "list"], out, err) == 1
    assert err.getvalue().count("\n") == 1 and "Traceback" not in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert cupsadmin.cups_command(["frobnicate"], out, err) == 2
    assert err.getvalue().startswith("pcnet cups: unknown command 'frobnicate'\nusage:")
    out, err = io.StringIO(), io.StringIO()
    assert cupsadmin.cups_command(["--help"], out, err) == 0
    assert out.getvalue().startswith("usage: pcnet cups")


def test_pcnet_cups_help_lists_every_command_with_its_options():
    """`pcnet cups --help` through the real console command, not argparse's empty help."""
    import subprocess
    import sys
    from pathlib import Path

    pcnet = Path(sys.executable).with_name("pcnet")
    for args in (["cups", "--help"], ["cups", "help"]):
        done = subprocess.run([str(pcnet), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        for command in ("install", "uninstall", "wrap", "unwrap", "list", "--server"):
            assert command in done.stdout


def test_uninstall_refuses_while_queues_are_wrapped_then_removes_only_its_launcher(cups_rig):
    make_queue(cups_rig, "lab", wrap=True)
    server = ["--server", cups_rig.server]
    launcher = cups_rig.backend_dir / "pcnet"

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        return cupsadmin.cups_command(server + list(args), out, err), out.getvalue(), err.getvalue()

    status, out, err = run("uninstall", "--backend-dir", str(cups_rig.backend_dir))
    assert status == 1 and "pcnet cups unwrap lab" in err and err.count("\n") == 1
    assert launcher.exists()
    assert run("unwrap", "lab")[0] == 0
    status, out, _ = run("uninstall", "--backend-dir", str(cups_rig.backend_dir))
    assert status == 0 and out == f"removed {launcher}\n" and not launcher.exists()
    assert run("uninstall", "--backend-dir", str(cups_rig.backend_dir))[1].startswith("no pcnet backend")


def test_uninstall_never_removes_a_backend_pcnet_did_not_write(tmp_path):
    other = tmp_path / "pcnet"
    other.write_text("#!/bin/sh\n# somebody else's backend\n")
    out, err = io.StringIO(), io.StringIO()
    assert cupsadmin.cups_command(["uninstall", "--backend-dir", str(tmp_path), "--force"],
                                  out, err) == 1
    assert other.exists() and "not written by `pcnet cups install`" in err.getvalue()


def test_cups_lists_the_pcnet_backend_as_a_device(cups_rig):
    out = cups_rig.run(["/usr/sbin/lpinfo", "-h", cups_rig.server, "--include-schemes", "pcnet",
                        "-v"])
    assert out.strip() == DISCOVERY_LINE.split(" ", 1)[0] + " pcnet"


# --- install ----------------------------------------------------------------------------------


def test_install_backend_writes_a_root_only_launcher_for_this_python(tmp_path):
    path = cupsadmin.install_backend(tmp_path, sys.executable,
                                     environ={"PCNET_PROVIDER_SOCKET": "/tmp/x.sock"})
    assert path == tmp_path / "pcnet"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    text = path.read_text()
    assert text.splitlines()[0] == f"#!{sys.executable} -I"
    assert "pcnet.provider.backend" in text
    # It really runs: discovery mode, from an empty environment, outside the source tree.
    done = subprocess.run([str(path)], capture_output=True, text=True, timeout=30, cwd="/",
                          env={}, check=False)
    assert (done.returncode, done.stdout) == (0, DISCOVERY_LINE + "\n"), done.stderr
    # A job with the provider down: RETRY_CURRENT, and the baked-in socket path is used.
    done = subprocess.run([str(path), "1", "u", "t", "1", ""], input=b"data", capture_output=True,
                          timeout=30, cwd="/", check=False,
                          env={"DEVICE_URI": "pcnet:socket://127.0.0.1:9",
                               "PCNET_PROVIDER_WAIT": "0", "PCNET_SPOOL_DIR": str(tmp_path / "s")})
    assert done.returncode == 7, done.stderr
    assert b"/tmp/x.sock" in done.stderr
    # Installing again replaces the launcher in place.
    assert cupsadmin.install_backend(tmp_path, sys.executable) == path
    assert "x.sock" not in path.read_text()


def test_install_backend_refuses_a_missing_directory_or_a_relative_python(tmp_path):
    with pytest.raises(NotFound):
        cupsadmin.install_backend(tmp_path / "nope", sys.executable)
    with pytest.raises(Exception, match="absolute path"):
        cupsadmin.install_backend(tmp_path, "python3")


def test_rig_reports_a_job_that_never_settles(cups_rig, fake_provider):
    make_queue(cups_rig, "q")
    cups_rig.run(["/usr/sbin/cupsdisable", "-h", cups_rig.server, "q"])
    job = cups_rig.submit("q", write_doc(cups_rig, "d.bin", b"x"))
    with pytest.raises(RigError, match="timed out after 0.5 s"):
        cups_rig.wait_for_job_state(job, SETTLED, timeout=0.5)
