"""Records the store returns beyond those of `pcnet.domain.model` (nodes, quarantined journal
entries, the change feed and printer name history), and the transaction handle both engines
build on.

They live here until the domain model needs them; they are re-exported by `pcnet.store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pcnet.domain.enrolment import ROLES

#: A node's standing; the values match `pcnet.net.registry.NodeStatus`.
NODE_STATUSES = ("pending", "approved", "rejected")
#: What a node may be.
NODE_ROLES = ROLES


@dataclass(frozen=True)
class Node:
    """A Print Provider, Site Server or device gateway known to the Application Server."""

    name: str
    role: str
    status: str                      # "pending", "approved" or "rejected"
    address: str = ""                # where it last connected from
    created_at: datetime | None = None
    approved_at: datetime | None = None
    # The digest of the node's credential (never the credential). Not shown in listings.
    credential_hash: str | None = field(default=None, repr=False)

    def public(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "address": self.address,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "approved_at": self.approved_at.isoformat() if self.approved_at else None,
        }


#: Where a quarantined journal entry stands: kept aside on its provider; sent back into the
#: provider's journal on an administrator's request; replayed and acknowledged at last.
QUARANTINE_STATES = ("quarantined", "retrying", "resolved")


@dataclass(frozen=True)
class QuarantinedEntry:
    """A journal entry a Print Provider set aside because the server refused it (or failed on
    it) for a reason other than being unavailable, as the provider reported it
    (pcnet/1 `journal.quarantined`)."""

    id: int
    node: str
    key: str                         # the entry's key in the provider's journal
    kind: str                        # the pcnet/1 op that reports it (job.offline, job.printed)
    job_uuid: str
    error_code: str
    error_message: str
    record: dict                     # the entry's fields
    state: str                       # one of QUARANTINE_STATES
    quarantined_at: datetime | None = None
    reported_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class SchemaStatus:
    """The database's schema against this pcnet's migrations (`IStore.schema_status`):
    `version` is the newest migration applied, `latest` the newest this pcnet knows, `current`
    whether every one of them is applied."""

    version: int
    latest: int
    current: bool


@dataclass(frozen=True)
class Change:
    """One entry of the change feed (`IStore.changes_since`).

    `table` names the replicated table, `key` the row's identity in it (an int id, a card
    number, a job uuid, or a tuple for link tables), `record` the row as it is now: a domain
    record (User, Group, Account, Printer, Quota, JobRecord, SiteOfflinePolicy) or a dict for link tables
    (cards, group_members, account_user_access, account_group_access); None when the row was
    deleted.
    """

    seq: int
    table: str
    key: object
    record: object | None


@dataclass(frozen=True)
class PrinterName:
    """A name a printer had, from `since` until `until` (None: its current name)."""

    name: str
    since: datetime
    until: datetime | None = None


class CursorTxn:
    """The part of a transaction handle both engines share: reading what the last statement
    returned. Each engine adds `execute` (a coroutine or a Deferred), its SQL dialect flags
    and `lock_change_feed`."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor):
        self._cursor = cursor

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount
