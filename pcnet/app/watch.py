"""The cross-process watcher: writes committed by *other* processes on the same database become
change events (`local=False`) on this server's bus, so its caches forget what they name.

Writes this process makes are published by whoever made them (the service layer) as they
commit; writes made by a `pcnet` command on the server's shell or by a second Application Server
on the same PostgreSQL reach the bus only through here. The store's engine says what changed
(`pcnet.store._watch`: PostgreSQL LISTEN/NOTIFY, SQLite `PRAGMA data_version` and the change
feed); this service turns each changed row into a `ChangeEvent` of the right kind. When the
store cannot say what changed (the listening connection was lost, too much changed at once) it
publishes one event of every kind with `id` ANY: every cache forgets everything.

`state()` is the `changes` section of the health report.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.logger import Logger

from pcnet.app.events import ANY, KINDS, ChangeEvent

log = Logger(namespace="pcnet.app.watch")

#: Replicated tables -> (change kind, whether the key is an integer id).
TABLE_KINDS = {
    "users": ("user", True),
    "cards": ("card", False),
    "groups": ("group", True),
    "group_members": ("group_member", False),
    "accounts": ("account", True),
    "account_user_access": ("account_access", False),
    "account_group_access": ("account_access", False),
    "printers": ("printer", True),
    "quotas": ("quota", True),
    "nodes": ("node", False),
    "jobs": ("job", False),
    "offline_policy": ("offline_policy", True),
}

_OPS = {"insert": "create", "update": "update", "delete": "delete"}


def events_for(changes) -> list[ChangeEvent]:
    """The change events for a list of `pcnet.store._watch.StoreChange` (or None: one ANY
    event per kind). Rows of tables this version does not know are skipped."""
    if changes is None:
        return [ChangeEvent(kind, ANY, "update", local=False) for kind in sorted(KINDS)]
    events = []
    for change in changes:
        kind, integer = TABLE_KINDS.get(change.table, (None, False))
        if kind is None:
            continue
        key = change.key
        if integer:
            try:
                key = int(key)
            except (TypeError, ValueError):
                key = ANY
        events.append(ChangeEvent(kind, key, _OPS.get(change.op, "update"), change.name,
                                  local=False))
    return events


class ChangeWatcher(Service):
    """Publishes other processes' writes on `bus` (see the module's doc). Start it with the
    rest of the server once the store has started."""

    name = "change-watcher"

    def __init__(self, store, bus, clock, *, interval: float):
        self.store = store
        self.bus = bus
        self.clock = clock
        self.interval = interval
        self.listener = None

    def startService(self):
        super().startService()
        self.listener = self.store.change_listener(self.clock, interval=self.interval)
        self.listener.start(self.heard).addErrback(
            lambda f: log.failure("the change watcher could not start", f))

    def heard(self, changes) -> None:
        self.bus.publish_all(events_for(changes))

    def stopService(self):
        super().stopService()
        if self.listener is not None:
            self.listener.stop()

    def state(self) -> dict:
        listener = self.listener
        if listener is None:
            return {"watching": "no", "connected": False}
        return {"watching": listener.how, "connected": bool(listener.connected)}
