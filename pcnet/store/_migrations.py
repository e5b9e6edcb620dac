"""Numbered schema migrations, applied in order at start-up, each in its own transaction.

`migrations/<engine>/NNNN_name.sql` holds the engine's DDL for version NNNN. The table
`schema_migrations` records each version applied (with its name and time), so a restart applies
nothing twice. Migrations are never edited once released: a change is a new file, written for
both engines.
"""

from __future__ import annotations

import re
from importlib import resources

from pcnet.errors import StoreUnavailable

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

SCHEMA_MIGRATIONS = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL,"
                     " applied_at BIGINT NOT NULL)")

SCHEMA_MIGRATIONS_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"

#: PostgreSQL advisory lock taken while migrating, so two servers starting at once take turns.
PG_MIGRATION_LOCK = 482131539317


def available(engine: str) -> list[tuple[int, str, str]]:
    """[(version, name, sql)] for an engine ("sqlite" or "postgres"), in version order."""
    found = []
    for entry in resources.files("pcnet.store").joinpath("migrations", engine).iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations for {engine} are not numbered 1..n: {versions}")
    return found


def apply_sqlite(conn, now_us: int) -> list[int]:
    """Apply pending migrations on a sqlite3 connection in autocommit mode (writer thread)."""
    conn.execute(SCHEMA_MIGRATIONS)
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    migrations = available("sqlite")
    check_not_newer(applied, migrations)
    done = []
    for version, name, sql in migrations:
        if version in applied:
            continue
        # executescript runs the whole file; BEGIN/COMMIT inside the script make it one
        # transaction together with its schema_migrations row.
        try:
            conn.executescript(
                "BEGIN IMMEDIATE;\n" + sql
                + f"\n;INSERT INTO schema_migrations (version, name, applied_at)"
                  f" VALUES ({version}, '{name}', {int(now_us)});\nCOMMIT;\n")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(version)
    return done


def check_not_newer(applied, migrations) -> None:
    """Refuse a database written by a newer pcnet: this version would misread it."""
    known = max((v for v, _, _ in migrations), default=0)
    newer = sorted(v for v in applied if v > known)
    if newer:
        raise StoreUnavailable(
            f"the database has schema version {newer[-1]}, newer than this pcnet knows"
            f" ({known}); upgrade pcnet")


async def apply_postgres(run_interaction, now_us: int) -> list[int]:
    """Apply pending migrations through `run_interaction(fn)` (one transaction per call)."""
    migrations = available("postgres")

    async def applied_versions(txn):
        await txn.execute(SCHEMA_MIGRATIONS_EXISTS)
        if not txn.fetchone()[0]:
            return set()
        await txn.execute("SELECT version FROM schema_migrations")
        return {row[0] for row in txn.fetchall()}

    check_not_newer(await run_interaction(applied_versions), migrations)
    done = []
    for version, name, sql in migrations:

        async def migrate(txn, version=version, name=name, sql=sql):
            await txn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
            await txn.execute(SCHEMA_MIGRATIONS)
            await txn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
            if txn.fetchone() is not None:
                return False
            await txn.execute(sql)
            await txn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, name, now_us))
            return True

        if await run_interaction(migrate):
            done.append(version)
    return done
