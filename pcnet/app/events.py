"""Change events: how everything that caches a record hears that the record changed.

Every write of the service layer publishes a `ChangeEvent` on the server's `ChangeBus` after it
committed. Subscribers (the job path's cache, pushed replica feeds, the web console's live views)
are called synchronously, in the order they subscribed, so that by the time the writer's
Deferred fires every in-process cache has already forgotten the stale record.

Writes made by *another* process on the same database (a second Application Server, a `pcnet`
command run on the server's shell) reach the bus through a watcher of the store (PostgreSQL
LISTEN/NOTIFY, or SQLite noticing another writer) that publishes them with `local=False`; see
`pcnet.app.watch`. A subscriber treats both the same way: it forgets what it cached.

A subscriber that raises is logged and skipped: a broken cache must never fail the write that
already committed, nor keep the other subscribers from hearing about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.logger import Logger

log = Logger(namespace="pcnet.app.events")

#: The kinds of record that change events name. A subscriber that knows only some of them
#: ignores the others; `ANY` means "something of this kind (or every kind) changed, which
#: record is not known" (a watcher that saw another process write but not what).
KINDS = frozenset({
    "user", "group", "group_member", "card", "account", "account_access", "printer", "quota",
    "token", "node", "job", "offline_policy", "device", "setting", "journal_entry",
})
ANY = None


@dataclass(frozen=True)
class ChangeEvent:
    """One committed change.

    - `kind`: one of `KINDS`;
    - `id`: the record's id (an int, or a uuid string for jobs), or `ANY` (None) when the
      publisher does not know which record changed;
    - `op`: "create", "update" or "delete";
    - `name`: the record's name where caches key by it (a username, a printer name), else None;
    - `local`: True when this process made the change, False when a watcher saw another
      process (or server) make it.
    """

    kind: str
    id: int | str | None = ANY
    op: str = "update"
    name: str | None = None
    local: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown change kind {self.kind!r}")
        if self.op not in ("create", "update", "delete"):
            raise ValueError(f"unknown change op {self.op!r}")


Subscriber = Callable[[ChangeEvent], object]


class ChangeBus:
    """In-process publish/subscribe of `ChangeEvent`s, synchronous and in subscription order."""

    def __init__(self):
        self._subscribers: list[tuple[Subscriber, frozenset[str] | None]] = []

    def subscribe(self, subscriber: Subscriber, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Call `subscriber(event)` for every event (of `kinds`, if given). Returns a function
        that unsubscribes it."""
        wanted = None if kinds is None else frozenset(kinds)
        if wanted is not None and not wanted <= KINDS:
            raise ValueError(f"unknown change kinds: {', '.join(sorted(wanted - KINDS))}")
        entry = (subscriber, wanted)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def publish(self, event: ChangeEvent) -> None:
        """Tell every interested subscriber; never raises because of a subscriber."""
        for subscriber, wanted in list(self._subscribers):
            if wanted is not None and event.kind not in wanted:
                continue
            try:
                subscriber(event)
            except Exception:
                log.failure("change subscriber {subscriber!r} failed on {event!r}",
                            subscriber=subscriber, event=event)

    def publish_all(self, events: Iterable[ChangeEvent]) -> None:
        for event in events:
            self.publish(event)
