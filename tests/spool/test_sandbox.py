"""The sandboxed runner itself (pcnet.spool._sandbox): what a helper can see, its limits, and
that nothing it starts outlives it. Each test runs in both sandboxes where this machine can."""

from __future__ import annotations

import os
import signal
import stat
import threading

import pytest

from pcnet.spool import Limits, SandboxUnavailable, sandbox_mode
from pcnet.spool._sandbox import Sandbox, bwrap_problem

from ._sandboxes import helpers_left, limits, live_descendants, wait_until


def run(sandbox: Sandbox, script: str, **kwargs):
    process = sandbox.start(["/bin/sh", "-c", script], **kwargs)
    out, err = process.stdout.read(), process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    return process.wait(), out.decode(), err.decode()


def test_auto_prefers_bubblewrap_where_it_works(work):
    expected = "bwrap" if bwrap_problem() is None else "user"
    assert sandbox_mode(Limits(work_dir=str(work))) == expected


def test_an_unknown_sandbox_user_is_refused_up_front(work):
    with pytest.raises(SandboxUnavailable, match="no-such-user"):
        sandbox_mode(Limits(sandbox="user", sandbox_user="no-such-user", work_dir=str(work)))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root changes to the sandbox user")
def test_the_user_sandbox_needs_a_work_dir_its_user_can_reach(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(SandboxUnavailable, match="not searchable"):
        sandbox_mode(Limits(sandbox="user", work_dir=str(closed)))


def test_a_helper_sees_an_empty_private_temporary_directory_and_no_host_tmp(mode, work):
    """bubblewrap hides the host's /tmp entirely; the user sandbox is only another uid there
    (Ghostscript's own file rules do the rest: see test_hostile_jobs), which cannot delete
    root's files."""
    canary = work.parent / f"pcnet-canary-{os.getpid()}-{mode}"
    written = work.parent / f"pcnet-written-{os.getpid()}"
    canary.write_text("keep me")
    try:
        with Sandbox(limits(mode, work)) as sandbox:
            outcome, out, _ = run(
                sandbox,
                'echo "tmp=$TMPDIR"; ls -A "$TMPDIR" | wc -l; '
                f"rm -f {canary} 2>/dev/null; touch {written} 2>/dev/null; id -u",
            )
        assert outcome.returncode == 0 and outcome.limit is None
        lines = out.split()
        assert lines[1] == "0"  # the temporary directory starts empty
        assert lines[2] != "0"  # never root
        assert canary.read_text() == "keep me"
        if mode == "bwrap":
            assert not written.exists()
    finally:
        canary.unlink(missing_ok=True)
        written.unlink(missing_ok=True)


def test_a_helper_cannot_read_another_jobs_directory(mode, work):
    other = Sandbox(limits(mode, work))
    secret = other.path + "/secret"
    with open(secret, "w") as file:
        file.write("another job's data")
    try:
        with Sandbox(limits(mode, work)) as sandbox:
            outcome, out, _ = run(sandbox, f"cat {secret} 2>/dev/null || echo refused")
        assert out.strip() == "refused"
    finally:
        other.close()


def test_an_exposed_file_is_readable_but_not_writable(mode, work, tmp_path):
    spool = tmp_path / "job.spool"
    spool.write_text("job data\n")
    os.chmod(spool, 0o600)  # as the backend leaves it: root's alone
    with Sandbox(limits(mode, work)) as sandbox:
        inside = sandbox.expose(str(spool))
        outcome, out, _ = run(sandbox, f"cat {inside}; echo x >> {inside} 2>/dev/null || echo ro")
    assert out.split("\n")[:2] == ["job data", "ro"]
    assert spool.read_text() == "job data\n"


def test_the_job_directory_is_private_and_removed_at_the_end(mode, work):
    with Sandbox(limits(mode, work)) as sandbox:
        with sandbox.create("body") as file:
            file.write(b"x")
        assert stat.S_IMODE(os.stat(sandbox.path).st_mode) in (0o700, 0o711)
        assert stat.S_IMODE(os.stat(file.name).st_mode) == 0o600
        path = sandbox.path
    assert not os.path.exists(path)
    assert list(work.iterdir()) == []


def test_wall_clock_timeout_kills_the_helper(mode, work):
    with Sandbox(limits(mode, work, timeout=1)) as sandbox:
        outcome, _, _ = run(sandbox, "exec sleep 60")
    assert outcome.limit == "time"
    assert helpers_left() == {}


def test_cpu_limit_stops_a_busy_loop(mode, work):
    with Sandbox(limits(mode, work, cpu_seconds=1, timeout=60)) as sandbox:
        outcome, _, _ = run(sandbox, "while :; do :; done")
    assert outcome.limit == "cpu"
    assert outcome.returncode == -signal.SIGXCPU


def test_memory_limit_refuses_a_large_allocation(mode, work):
    with Sandbox(limits(mode, work, memory_mb=64)) as sandbox:
        outcome, _, err = run(sandbox, "dd if=/dev/zero of=/dev/null bs=256M count=1")
    assert outcome.returncode != 0
    assert "memory" in err.lower()


def test_a_file_larger_than_the_temporary_space_cannot_be_written(mode, work):
    with Sandbox(limits(mode, work, temp_mb=2)) as sandbox:
        outcome, out, _ = run(
            sandbox, 'dd if=/dev/zero of="$TMPDIR/big" bs=1M count=8 2>/dev/null; '
                     'echo $(($(wc -c < "$TMPDIR/big") / 1048576))')
    # bubblewrap's tmpfs is full at 2 MiB; in the user sandbox the file size limit kills dd.
    assert out.strip() in ("", "0", "1", "2")
    assert outcome.limit in (None, "output")


def test_many_small_files_over_the_temporary_space_stop_the_user_sandbox(work):
    with Sandbox(limits("user", work, temp_mb=1, timeout=60)) as sandbox:
        outcome, _, _ = run(
            sandbox, 'i=0; while :; do i=$((i+1)); head -c 65536 /dev/zero > "$TMPDIR/f$i"; done')
    assert outcome.limit == "output"


def test_children_left_behind_by_a_helper_are_killed(mode, work):
    with Sandbox(limits(mode, work)) as sandbox:
        outcome, out, _ = run(sandbox, "sleep 300 >/dev/null 2>&1 & echo $!")
    assert outcome.returncode == 0
    assert helpers_left() == {}
    assert not [name for name in live_descendants(os.getpid()).values() if name == "sleep"]


def test_a_child_holding_the_output_open_is_stopped_by_the_timeout(mode, work):
    """Reading a helper's output until it ends cannot hang on a child it left behind: under
    bubblewrap the child dies with the helper (its PID namespace ends), in the user sandbox the
    timeout kills the group."""
    with Sandbox(limits(mode, work, timeout=1)) as sandbox:
        outcome, out, _ = run(sandbox, "sleep 300 & echo started")
    assert out.strip() == "started"
    assert outcome.limit == (None if mode == "bwrap" else "time")
    assert helpers_left() == {}


def test_a_killed_helper_reports_why(mode, work):
    with Sandbox(limits(mode, work)) as sandbox:
        process = sandbox.start(["/bin/sh", "-c", "exec sleep 300"])
        process.kill("pages")
        process.stdout.close()
        process.stderr.close()
        outcome = process.wait()
    assert outcome.limit == "pages"


def test_helpers_run_in_parallel_from_several_threads(mode, work):
    """Later work renders page ranges in parallel inside one job's sandbox."""
    results = []
    with Sandbox(limits(mode, work)) as sandbox:
        def one(n):
            results.append(run(sandbox, f'echo {n} > "$TMPDIR/n"; cat "$TMPDIR/n"')[1].strip())
        threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(results) == ["0", "1", "2", "3"]  # each had its own temporary directory
    assert wait_until(lambda: helpers_left() == {}, seconds=5)
