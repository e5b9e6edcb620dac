"""Hostile print jobs against the real analysis: Ghostscript sandboxed and bounded.

Each crafted job tries what issue 6 found possible with `-dSAFER` alone (delete, write and list
files under /tmp; run forever; allocate without bound; print a million pages; claim absurd
copies). Each must end within its limits with the documented answer, touch nothing outside the
sandbox and leave no process behind. The jobs encode what they managed to do in their output:
a page painted red (a colour page) means the forbidden operation succeeded.
"""

from __future__ import annotations

import gzip
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from pikepdf import Name

from pcnet.spool import Limits, analyse
from pcnet.spool import _ghostscript

from ._sandboxes import alive, helpers_left, limits, live_descendants, wait_until
from ._support import ESC, TESTDATA, grey_text, pwg_header, pwg_page, write_pdf

REPO = Path(__file__).resolve().parents[2]

# Page 1 of every probe: red when the operation in { } succeeded, a grey box when refused.
PROLOGUE = b"""%!PS
/verdict { { 1 0 0 setrgbcolor 0 0 612 792 rectfill } { 0.5 setgray 72 72 72 72 rectfill }
  ifelse showpage } def
/tried { stopped not verdict } def
"""


@pytest.fixture
def canary():
    """A file in the host's real /tmp, outside any sandbox."""
    path = Path(tempfile.gettempdir()) / f"pcnet-canary-{os.getpid()}-{secrets.token_hex(4)}"
    path.write_text("must survive")
    yield path
    path.unlink(missing_ok=True)


def job(tmp_path: Path, data: bytes, name: str = "job.ps") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def ps_string(path) -> bytes:
    return b"(" + str(path).encode() + b")"


def assert_clean(work: Path) -> None:
    assert helpers_left() == {}
    assert list(work.iterdir()) == []  # the job's private directory is gone


def test_a_job_cannot_delete_files_outside_its_own_temporary_directory(mode, work, canary,
                                                                       tmp_path):
    other = Path(tempfile.mkdtemp(prefix="pcnet-job-", dir=work))  # another job, analysing
    (other / "body").write_text("another job")
    data = PROLOGUE + b"\n".join([
        b"{ (pcnet) (w) .tempfile closefile deletefile } stopped not verdict",  # its own: allowed
        ps_string(canary) + b" { deletefile } tried",
        ps_string(other / "body") + b" { deletefile } tried",
        ps_string(tmp_path / "job.ps") + b" { deletefile } tried",  # the spool file itself
    ])
    result = analyse(job(tmp_path, data), limits=limits(mode, work))
    assert (result.pages, result.colour_page_numbers, result.fallback) == (4, (1,), False)
    assert canary.read_text() == "must survive"
    assert (other / "body").read_text() == "another job"
    assert (tmp_path / "job.ps").exists()
    (other / "body").unlink()
    other.rmdir()
    assert_clean(work)


def test_a_job_cannot_write_files_outside_its_temporary_directory(mode, work, tmp_path):
    """Under bubblewrap "/tmp/..." is the job's own private tmpfs, so writing there may
    succeed (page 1); on the host nothing appears."""
    token = secrets.token_hex(4)
    targets = [Path(tempfile.gettempdir()) / f"pcnet-written-{token}", tmp_path / "written",
               work / "written"]
    data = PROLOGUE + b"\n".join(
        ps_string(t) + b" { (w) file dup (owned) writestring closefile } tried" for t in targets)
    result = analyse(job(tmp_path, data), limits=limits(mode, work))
    try:
        assert result.pages == 3
        assert set(result.colour_page_numbers) <= ({1} if mode == "bwrap" else set())
        assert [t for t in targets if t.exists()] == []
    finally:
        for target in targets:
            target.unlink(missing_ok=True)
    assert_clean(work)


def test_a_job_lists_nothing_outside_the_sandbox(mode, work, canary, tmp_path):
    """filenameforall listed 41,912 host paths under -dSAFER; now it lists none. (A pattern
    such as (/*) walks the whole visible tree, which the time limit ends: see the loop tests.)"""
    patterns = [b"(/tmp/*)", ps_string(canary)[:-1] + b"*)", b"(/etc/*)",
                ps_string(tmp_path)[:-1] + b"/*)", ps_string(work)[:-1] + b"/*)"]
    data = PROLOGUE + b"/n 0 def\n" + b"\n".join(
        b"{ " + p + b" { pop /n n 1 add def } 1024 string filenameforall } stopped pop"
        for p in patterns) + b"\nn 0 gt verdict\n"
    result = analyse(job(tmp_path, data), limits=limits(mode, work))
    assert (result.pages, result.colour_pages, result.fallback) == (1, 0, False)
    assert_clean(work)


def test_a_job_cannot_read_another_jobs_files(mode, work, tmp_path):
    other = Path(tempfile.mkdtemp(prefix="pcnet-job-", dir=work))
    (other / "body").write_bytes(b"%!PS\n1 0 0 setrgbcolor 0 0 612 792 rectfill showpage\n")
    data = PROLOGUE + ps_string(other / "body") + b" { run } stopped pop showpage\n"
    try:
        result = analyse(job(tmp_path, data), limits=limits(mode, work))
        assert result.colour_pages == 0  # the other job's red page never ran
    finally:
        (other / "body").unlink()
        other.rmdir()
    assert_clean(work)


def test_an_endless_loop_stops_at_the_time_limit_and_counts_as_over_the_page_limit(mode, work,
                                                                                  tmp_path):
    result = analyse(job(tmp_path, b"%!PS\n%%Pages: 1\n{ } loop\n"),
                     limits=limits(mode, work, timeout=2, cpu_seconds=60, max_pages=50))
    assert result.limits_hit == ("time", "pages")
    assert (result.pages, result.colour_pages, result.fallback) == (51, 51, True)
    assert_clean(work)


def test_an_endless_loop_stops_at_the_cpu_limit(mode, work, tmp_path):
    result = analyse(job(tmp_path, b"%!PS\n{ } loop\n"),
                     limits=limits(mode, work, timeout=120, cpu_seconds=2, max_pages=50))
    assert result.limits_hit == ("cpu", "pages")
    assert result.pages == 51 and "CPU" in result.error
    assert_clean(work)


@pytest.mark.parametrize("program", [
    b"/l [] def { /l [ l 1000000 string ] def } loop",
    # Catching VMerror and going on: then the time limit ends it.
    b"/l [] def { { /l [ l 1000000 string ] def } stopped pop } loop",
], ids=["allocation-loop", "allocation-loop-catching-vmerror"])
def test_unbounded_allocation_stops_at_the_memory_limit(mode, work, tmp_path, program):
    result = analyse(job(tmp_path, b"%!PS\n" + program + b"\n"),
                     limits=limits(mode, work, memory_mb=200, timeout=8, max_pages=50))
    assert result.pages == 51 and result.fallback
    assert result.limits_hit in (("memory", "pages"), ("time", "pages"), ("cpu", "pages"))
    assert_clean(work)


def test_the_memory_limit_is_reported_as_such(mode, work, tmp_path):
    result = analyse(job(tmp_path, b"%!PS\n/l [] def { /l [ l 1000000 string ] def } loop\n"),
                     limits=limits(mode, work, memory_mb=200, timeout=60, max_pages=50))
    assert result.limits_hit == ("memory", "pages") and "memory" in result.error


def test_a_million_showpages_stop_deterministically_past_max_pages(mode, work, tmp_path):
    result = analyse(job(tmp_path, b"%!PS\n%%Pages: 1\n1000000 { showpage } repeat\n"),
                     limits=limits(mode, work, max_pages=300))
    assert (result.pages, result.limits_hit, result.fallback) == (301, ("pages",), True)
    assert result.colour_page_numbers == (301,)  # the 300 blank pages judged grey
    assert "more than 300 pages" in result.error
    assert_clean(work)


def test_the_default_page_maximum_bounds_a_million_showpages(mode, work, tmp_path):
    defaults = Limits(sandbox=mode, work_dir=str(work))
    result = analyse(job(tmp_path, b"%!PS\n1000000 { showpage } repeat\n"), limits=defaults)
    assert (result.pages, result.limits_hit) == (defaults.max_pages + 1, ("pages",))


# -- absurd copies, in every format that can claim them ------------------------------------


def pwg(copies: int) -> bytes:
    width, height = 8, 8
    header = pwg_header(width=width, height=height, colour_space=18, colours=1, copies=copies)
    return b"RaS2" + header + pwg_page([b"\xff" * width] * height, 1)


COPIES_CLAIMS = {
    "postscript-NumCopies-2^31-1":
        b"%!PS\n<< /NumCopies 2147483647 >> setpagedevice 0 setgray 72 72 moveto showpage\n",
    "postscript-#copies-999999999": b"%!PS\n/#copies 999999999 def showpage\n",
    "postscript-#copies-real-1e30": b"%!PS\n/#copies 1e30 def showpage\n",
    "pjl-COPIES-2^32-1-postscript": b"\x1b%-12345X@PJL SET COPIES=4294967295\n"
        b"@PJL ENTER LANGUAGE=POSTSCRIPT\n%!PS\nshowpage\n",
    "pjl-QTY-999999999-pcl": b"\x1b%-12345X@PJL SET QTY=999999999\n@PJL ENTER LANGUAGE=PCL\n"
        + ESC + b"EText\f",
    "pcl-&l4294967295X": ESC + b"E" + ESC + b"&l4294967295XText\f",
    "pwg-NumCopies-2^32-1": pwg(2**32 - 1),
}


@pytest.mark.parametrize("name", sorted(COPIES_CLAIMS))
def test_absurd_copies_are_clamped_and_flagged(work, tmp_path, name):
    settings = limits("auto", work, max_copies=99)
    result = analyse(job(tmp_path, COPIES_CLAIMS[name], "job"), limits=settings)
    assert (result.copies, result.limits_hit, result.fallback) == (100, ("copies",), True)
    assert "more than 99" in result.error
    assert result.pages == 1


def test_absurd_pdf_copies_are_clamped_and_flagged(work, tmp_path):
    path = write_pdf(tmp_path / "job.pdf", [grey_text()],
                     viewer_preferences={"/NumCopies": 2147483647, "/Duplex": Name.Simplex})
    result = analyse(path, limits=limits("auto", work, max_copies=99))
    assert (result.copies, result.limits_hit) == (100, ("copies",))


def test_default_copies_bound_keeps_the_claim_representable(work, tmp_path):
    result = analyse(job(tmp_path, COPIES_CLAIMS["pcl-&l4294967295X"], "job"),
                     limits=Limits(work_dir=str(work)))
    assert result.copies == Limits().max_copies + 1 < 2**31


# -- page counts without Ghostscript: the same rule ----------------------------------------


@pytest.mark.parametrize("name, data", [
    ("pcl-form-feeds", ESC + b"E" + b"\f" * 1_000_000),
    ("text-form-feeds", b"x\f" * 500_000),
    ("pwg-pages", b"RaS2" + (pwg_header(width=1, height=1, colour_space=18, colours=1)
                             + pwg_page([b"\xff"], 1)) * 500),
])
def test_a_page_flood_without_ghostscript_is_bounded_by_the_same_rule(work, tmp_path, name, data):
    """A 1 MB PCL file of form feeds counted 1,000,000 pages; now: more than max_pages."""
    result = analyse(job(tmp_path, data, name), limits=limits("auto", work, max_pages=300))
    assert (result.pages, result.limits_hit, result.fallback) == (301, ("pages",), True)


def test_a_pdf_with_more_pages_than_the_maximum_is_not_rendered(work, tmp_path, monkeypatch):
    def no_render(*args, **kwargs):
        raise AssertionError("a PDF over the page maximum must not be rendered")

    monkeypatch.setattr(_ghostscript, "render", no_render)
    path = write_pdf(tmp_path / "job.pdf", [grey_text()] * 12)
    result = analyse(path, limits=limits("auto", work, max_pages=10))
    assert (result.pages, result.colour_pages, result.limits_hit) == (11, 11, ("pages",))


# -- unpacking in the job's private directory, bounded -------------------------------------


def test_a_gzip_bomb_is_bounded_and_counts_as_over_the_page_limit(work, tmp_path):
    bomb = gzip.compress(b"%!PS\n" + b"%" * (8 * 1024 * 1024), compresslevel=9)
    result = analyse(job(tmp_path, bomb, "job.gz"),
                     limits=limits("auto", work, max_unpacked_mb=2, max_pages=50))
    assert (result.pages, result.limits_hit) == (51, ("size", "pages"))
    assert "more than 2 MB" in result.error
    assert_clean(work)


@pytest.mark.parametrize("wrapping", ["pjl", "gzip"])
def test_wrapped_jobs_are_unpacked_in_the_jobs_private_directory(mode, work, tmp_path,
                                                                  monkeypatch, wrapping):
    seen = []
    real_render = _ghostscript.render

    def spy(path, *, sandbox, **options):
        seen.append((path, sandbox.path, oct(os.stat(sandbox.path).st_mode & 0o777),
                     oct(os.stat(path).st_mode & 0o777)))
        return real_render(path, sandbox=sandbox, **options)

    monkeypatch.setattr(_ghostscript, "render", spy)
    body = (TESTDATA / "onepage-a4.ps").read_bytes()
    data = (b"\x1b%-12345X@PJL ENTER LANGUAGE=POSTSCRIPT\n" + body if wrapping == "pjl"
            else gzip.compress(body))
    result = analyse(job(tmp_path, data, "job"), limits=limits(mode, work))
    assert (result.format, result.pages, result.fallback) == ("postscript", 1, False)
    ((path, directory, directory_mode, file_mode),) = seen
    assert os.path.dirname(path) == directory and directory.startswith(str(work))
    assert directory_mode in ("0o700", "0o711") and file_mode == "0o600"
    assert_clean(work)


# -- a killed provider leaves no Ghostscript behind ----------------------------------------

CHILD = textwrap.dedent("""
    import sys, threading
    from pcnet.spool import Limits, analyse
    limits = Limits(sandbox=sys.argv[2], work_dir=sys.argv[3], timeout=600, cpu_seconds=600)
    # As in the provider: the analysis runs in a worker thread, not the main one.
    worker = threading.Thread(target=analyse, args=(sys.argv[1],), kwargs={"limits": limits})
    worker.start()
    worker.join()
""")


def test_killing_the_analysing_process_kills_ghostscript(mode, work, tmp_path):
    spool = job(tmp_path, b"%!PS\n{ } loop\n")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(spool), mode, str(work)],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        running = wait_until(
            lambda: [p for p, n in live_descendants(child.pid).items() if n == "gs"], seconds=60)
        assert running, child.stderr.read1().decode() if child.poll() is not None else "no gs"
        helpers = live_descendants(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        gone = wait_until(lambda: not [p for p in helpers if alive(p)], seconds=10)
        assert gone, {p: n for p, n in helpers.items() if alive(p)}
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        child.stderr.close()
        for pid in [p for p in locals().get("helpers", {}) if alive(p)]:
            os.kill(pid, signal.SIGKILL)  # only on failure: what the test itself started
