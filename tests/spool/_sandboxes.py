"""What the sandbox tests share: the modes this machine can run, limits for a test, and a check
that no helper process outlives its analysis."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from pcnet.spool import Limits
from pcnet.spool._sandbox import bwrap_problem

HELPERS = ("gs", "bwrap", "prlimit", "setpriv")


def modes() -> list:
    """``bwrap`` (skipped where bubblewrap cannot run) and ``user``."""
    problem = bwrap_problem()
    return [
        pytest.param("bwrap", marks=pytest.mark.skipif(problem is not None, reason=str(problem))),
        "user",
    ]


@contextmanager
def work_dir():
    """A fresh directory for job directories, reachable by the user sandbox's user (as /tmp is,
    and as pytest's own 0700 temporary directories are not)."""
    path = tempfile.mkdtemp(prefix=f"pcnet-test-work-{os.getpid()}-")
    os.chmod(path, 0o711)
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def limits(mode: str, work: Path, **overrides) -> Limits:
    values = dict(sandbox=mode, work_dir=str(work), timeout=30.0, cpu_seconds=30,
                  memory_mb=512, temp_mb=16, max_pages=200)
    values.update(overrides)
    return Limits(**values)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def live_descendants(root: int) -> dict[int, str]:
    """Processes below *root* that are alive (not zombies): pid -> command name."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent(int(entry))
            if parent is not None:
                parents[int(entry)] = parent
    found = {}
    for pid in parents:
        ancestor, steps = parents.get(pid), 0
        while ancestor and steps < 64:
            if ancestor == root:
                if _state(pid) not in (None, "Z"):
                    found[pid] = _name(pid)
                break
            ancestor, steps = parents.get(ancestor), steps + 1
    return found


def alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def helpers_left() -> dict[int, str]:
    """Sandbox helpers still running below this test process."""
    return {pid: name for pid, name in live_descendants(os.getpid()).items() if name in HELPERS}


def wait_until(predicate, *, seconds: float, step: float = 0.05):
    """Poll *predicate* until it is true or *seconds* pass; returns its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)
