"""pcnet's storage: one store interface (`pcnet.interfaces.IStore`), two engines.

`open_store(url, reactor=reactor)` returns a `Store` on SQLite (the embedded default: one file,
WAL, synchronous=FULL, one writer thread with group commit) or on PostgreSQL (txpostgres, a
connection pool, the hot path in PL/pgSQL). Call `start()` before anything else: it connects and
applies the numbered migrations. See docs/storage.md for the schema, the engines and the change
feed.

Database addresses:

- `sqlite:///abs/path/pcnet.db` (also `sqlite:////abs/path/pcnet.db`): a file; its directory must
  exist. `sqlite:relative/path.db`: relative to the working directory.
- `sqlite::memory:`: a private in-memory database (tests).
- `postgresql://user[:password]@host[:port]/dbname[?libpq-options]` (or `postgres://`), or a
  libpq keyword string such as `host=db1 port=5432 dbname=pcnet user=pcnet`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pcnet.errors import ConfigError
from pcnet.store._address import describe_address, password_of, redact_url
from pcnet.store._records import (
    NODE_STATUSES,
    QUARANTINE_STATES,
    Change,
    SchemaStatus,
    Node,
    PrinterName,
    QuarantinedEntry,
)
from pcnet.store._store import Store

__all__ = [
    "DEFAULT_POOL_SIZE",
    "NODE_STATUSES",
    "Change",
    "SchemaStatus",
    "Node",
    "PrinterName",
    "QUARANTINE_STATES",
    "QuarantinedEntry",
    "Store",
    "describe_address",
    "open_store",
    "password_of",
    "redact_url",
]

#: PostgreSQL connections kept open when the caller does not say.
DEFAULT_POOL_SIZE = 16


def open_store(url_or_config, *, reactor, pool_size: int | None = None, clock=None) -> Store:
    """A (not yet started) store for a database URL, a `pcnet.config.Config`, or a mapping
    with "url" (and optionally "pool_size"). Raises ConfigError for an address it cannot use.

    `clock` (an IReactorTime, default: the reactor) stamps created_at/last_used_at when the
    caller gives no time."""
    url, configured_pool = _address(url_or_config)
    pool_size = pool_size or configured_pool or DEFAULT_POOL_SIZE
    if url.startswith("sqlite:"):
        from pcnet.store._sqlite import SqliteEngine, sqlite_path

        try:
            path = sqlite_path(url)
        except ValueError as e:
            raise ConfigError(f"database url: {e}") from None
        return Store(SqliteEngine(path, reactor=reactor), reactor=reactor, clock=clock)
    if url.startswith(("postgresql://", "postgres://")) or ("=" in url and "://" not in url):
        from pcnet.store._postgres import PostgresEngine

        return Store(PostgresEngine(url, reactor=reactor, pool_size=pool_size), reactor=reactor,
                     clock=clock)
    raise ConfigError("database url: expected sqlite:///PATH, postgresql://USER@HOST:PORT/DBNAME"
                      " or a libpq connection string")


def _address(url_or_config) -> tuple[str, int | None]:
    database_url = getattr(url_or_config, "database_url", None)
    if isinstance(database_url, str):  # pcnet.config.Config
        return database_url, url_or_config["database"]["pool_size"]
    if isinstance(url_or_config, Mapping):
        if "url" not in url_or_config:
            raise ConfigError("database: url is required")
        return str(url_or_config["url"]), url_or_config.get("pool_size")
    if isinstance(url_or_config, str) and url_or_config.strip():
        return url_or_config.strip(), None
    raise ConfigError(f"database url: {url_or_config!r} is not a database address")
