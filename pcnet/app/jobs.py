"""The job path's cache: what a decision reads (printers, users, accounts), kept in memory.

The job service (`pcnet.app.services.jobs`) reads through `JobDirectory` on every job, so the
Application Server's hot path does not ask the store for the same printer and user again and
again. The cache learns of changes from the change bus (`pcnet.app.events`): the services
publish an event after every write they commit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from pcnet.domain.model import Account, Printer, User


def utcnow(clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), tz=timezone.utc)


class JobDirectory:
    """A read-through cache of what the decision needs: printers, users, accounts.

    Printers and users change rarely: they are cached until a change event names them
    (`changed(event)`; the job service subscribes it to the bus, once). This process's own
    writes are published on the bus as they commit, other processes' (a `pcnet` command, a
    second server on the same database) by the watcher (`pcnet.app.watch`). Account balances
    change with every job: the cache keeps the balance left by the newest ledger row this
    process has seen (by transaction id, so a late reply cannot roll it back), an event about
    the account forgets it (except the event of the job service's own charge, whose balance it
    has just kept), and the store's guard still refuses any charge a stale balance would have
    allowed (another server's charges are not notified, see migration postgres/0005: the guard
    catches them).
    """

    def __init__(self, store):
        self._store = store
        self._printers: dict[int, Printer] = {}
        self._users: dict[str, User] = {}
        self._accounts: dict[int, tuple[int, Account]] = {}

    async def printer(self, printer_id: int) -> Printer:
        p = self._printers.get(printer_id)
        if p is None:
            p = self._printers[printer_id] = await self._store.get_printer(printer_id)
        return p

    async def user(self, username: str) -> User:
        u = self._users.get(username)
        if u is None:
            u = self._users[username] = await self._store.get_user_by_name(username)
        return u

    async def account(self, account_id: int) -> Account:
        cached = self._accounts.get(account_id)
        if cached is None:
            account = await self._store.get_account(account_id)
            self._accounts.setdefault(account_id, (0, account))
            return account
        return cached[1]

    def saw_transaction(self, txn) -> None:
        """Keep the cached balance in step with a ledger row this process just wrote."""
        cached = self._accounts.get(txn.account_id)
        if cached is None:
            return
        seen, account = cached
        if txn.id > seen:
            self._accounts[txn.account_id] = (txn.id, replace(account, balance=txn.balance_after))

    def forget_printer(self, printer_id: int | None = None) -> None:
        self._printers.pop(printer_id, None) if printer_id is not None else self._printers.clear()

    def forget_user(self, username: str | None = None) -> None:
        self._users.pop(username, None) if username is not None else self._users.clear()

    def forget_account(self, account_id: int | None = None) -> None:
        self._accounts.pop(account_id, None) if account_id is not None else self._accounts.clear()

    def forget_all(self) -> None:
        self._printers.clear()
        self._users.clear()
        self._accounts.clear()

    # --- change events ---------------------------------------------------------------------------

    #: The kinds of change that touch what this cache holds.
    FOLLOWS = ("printer", "user", "account")

    def changed(self, event) -> None:
        """A change event: forget the record it names (every record of its kind for ANY). A
        user is named by its username, its id (a deleted user's row, heard from another
        process, has no name) or both."""
        if event.kind == "printer":
            self.forget_printer(event.id)
        elif event.kind == "account":
            self.forget_account(event.id)
        elif event.kind == "user":
            if event.name is None and event.id is None:
                self.forget_user()
                return
            if event.name is not None:
                self.forget_user(event.name)
            if event.id is not None:
                for name in [n for n, u in self._users.items() if u.id == event.id]:
                    self._users.pop(name, None)

