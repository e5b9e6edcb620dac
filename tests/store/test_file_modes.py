"""The SQLite database holds password and PIN hashes: it and its -wal and -shm files are readable
by their owner only, whatever the umask, and an older world-readable database is tightened."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat

import pytest_twisted
from twisted.internet import reactor

from pcnet.store import open_store


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest_twisted.ensureDeferred
async def test_a_new_database_and_its_wal_files_are_created_0600(tmp_path):
    path = tmp_path / "pcnet.db"
    with umask(0o022):
        store = open_store(f"sqlite:///{path}", reactor=reactor)
        await store.start()
        try:
            await store.create_user("alice", password_hash="scrypt$hash")
            files = {p.name: mode(p) for p in tmp_path.iterdir()}
        finally:
            await store.stop()
    assert files == {"pcnet.db": 0o600, "pcnet.db-wal": 0o600, "pcnet.db-shm": 0o600}


@pytest_twisted.ensureDeferred
async def test_an_existing_world_readable_database_is_tightened(tmp_path):
    path = tmp_path / "pcnet.db"
    with umask(0o022):
        conn = sqlite3.connect(path)  # as an older pcnet made it: 0644
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        assert mode(path) == 0o644 and mode(f"{path}-wal") == 0o644
        store = open_store(f"sqlite:///{path}", reactor=reactor)
        await store.start()
        try:
            assert mode(path) == 0o600 and mode(f"{path}-wal") == 0o600
            assert mode(f"{path}-shm") == 0o600
        finally:
            await store.stop()
            conn.close()


def test_the_start_up_check_does_not_create_the_database_world_readable(tmp_path):
    from pcnet.app.service import check_database_reachable

    path = tmp_path / "pcnet.db"
    with umask(0o022):
        check_database_reachable(f"sqlite:///{path}")
    assert mode(path) == 0o600
