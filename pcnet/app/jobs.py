"""The job service: decide what happens to a job, charge it and write it to the job log.

This is the Application Server's hot path (every print goes through `submit`). It reads the
printer, the user and the account through `JobDirectory`, an in-process cache (see below), asks
the pure decision rules in `pcnet.domain.decision`, and writes the job log row and its charge in
one store transaction. The store's guard is the final word on balances: if a concurrent job
emptied the account between the read and the write, the job is denied then.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from twisted.internet.defer import Deferred

from pcnet.domain.decision import DenyReason, decide
from pcnet.domain.model import (
    Account,
    Decision,
    JobAction,
    JobRecord,
    JobRequest,
    JobStatus,
    LedgerEntry,
    Printer,
    TransactionKind,
    User,
)
from pcnet.errors import InsufficientFunds, InvalidInput, NotFound
from pcnet.money import ZERO, format_money

_STATUS_FOR_ACTION = {
    JobAction.PRINT: JobStatus.PRINTED,
    JobAction.DENY: JobStatus.DENIED,
    JobAction.HOLD: JobStatus.HELD,
}


def utcnow(clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), tz=timezone.utc)


#: No real job prints more; the bound keeps any cost far inside the ledger's 64-bit minor units.
MAX_JOB_PAGES = 10_000_000


def validate_request(req: JobRequest) -> None:
    """Refuse impossible jobs before anything is read or written."""
    if not req.username:
        raise InvalidInput("username: required")
    if req.pages < 0 or req.pages > 1_000_000:
        raise InvalidInput(f"pages: {req.pages} is out of range")
    if req.colour_pages < 0 or req.colour_pages > req.pages:
        raise InvalidInput(f"colour_pages: {req.colour_pages} must be between 0 and pages ({req.pages})")
    if req.copies < 1 or req.copies > 100_000:
        raise InvalidInput(f"copies: {req.copies} is out of range")
    if req.pages * req.copies > MAX_JOB_PAGES:
        raise InvalidInput(f"pages x copies: {req.pages * req.copies} is more than {MAX_JOB_PAGES}")


class JobDirectory:
    """A read-through cache of what the decision needs: printers, users, accounts.

    Printers and users change rarely and every change goes through this process's store, so
    they are cached until `forget_*` is called (the admin API calls it after each write).
    Account balances change with every job: the cache keeps the balance left by the newest
    ledger row this process has seen (by transaction id, so a late reply cannot roll it back),
    and the store's guard still refuses any charge a stale balance would have allowed.
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


class JobService:
    """Decisions, charges and the job log for the Application Server."""

    def __init__(self, store, clock, *, directory: JobDirectory | None = None):
        self.store = store
        self.clock = clock
        self.directory = directory or JobDirectory(store)

    def submit(self, req: JobRequest, *, origin: str = "app") -> Deferred:
        """Decide and record a job. Fires with (Decision, JobRecord)."""
        return Deferred.fromCoroutine(self._submit(req, origin))

    async def _submit(self, req: JobRequest, origin: str):
        validate_request(req)
        now = utcnow(self.clock)
        job_uuid = req.uuid or str(uuidlib.uuid4())
        printer = await self.directory.printer(req.printer_id)
        try:
            user = await self.directory.user(req.username)
        except NotFound:
            return await self._record_unknown_user(req, printer, job_uuid, now, origin)
        account, allowed = await self._account_for(req, user)
        duplicate = False
        window = printer.filters.duplicate_window_seconds
        if window:
            duplicate = await self.store.find_duplicate_job(
                user.id, printer.id, req.document_name, req.pages, now - timedelta(seconds=window))
        decision = decide(req, printer, user, account, account_allowed=allowed, duplicate=duplicate)
        job = JobRecord(
            uuid=job_uuid, user_id=user.id, username=user.username, printer_id=printer.id,
            account_id=decision.account_id, pages=req.pages, colour_pages=req.colour_pages,
            duplex=req.duplex, copies=req.copies, paper_size=req.paper_size,
            document_name=req.document_name, cost=decision.cost,
            status=_STATUS_FOR_ACTION[decision.action], reason=decision.reason, client=req.client,
            origin=origin, created_at=now)
        charge = None
        if decision.action is JobAction.PRINT:
            charge = self.charge_for(job, origin=origin, now=now)
        try:
            stored, txn = await self.store.record_job(job, charge, guard=True)
        except InsufficientFunds as e:
            decision = Decision(JobAction.DENY, decision.cost,
                                f"{DenyReason.INSUFFICIENT_FUNDS}: {e.message}", decision.account_id)
            job = replace(job, status=JobStatus.DENIED, reason=decision.reason)
            stored, txn = await self.store.record_job(job, None)
            self.directory.forget_account(decision.account_id)
        if txn is not None:
            self.directory.saw_transaction(txn)
        if stored.status is not job.status:
            # The uuid was seen before: report what was decided then, not now.
            decision = Decision(_action_for_status(stored.status), stored.cost, stored.reason,
                                stored.account_id)
        return decision, stored

    async def _account_for(self, req: JobRequest, user: User) -> tuple[Account | None, bool]:
        if req.account_id is None or req.account_id == user.personal_account_id:
            if user.personal_account_id is None:
                return None, False
            return await self.directory.account(user.personal_account_id), True
        try:
            account = await self.directory.account(req.account_id)
        except NotFound:
            return None, False
        return account, await self.store.user_can_use_account(user.id, account.id)

    async def _record_unknown_user(self, req, printer, job_uuid, now, origin):
        reason = f"unknown user: {req.username}"
        job = JobRecord(
            uuid=job_uuid, user_id=None, username=req.username, printer_id=printer.id,
            account_id=None, pages=req.pages, colour_pages=req.colour_pages, duplex=req.duplex,
            copies=req.copies, paper_size=req.paper_size, document_name=req.document_name,
            cost=ZERO, status=JobStatus.DENIED, reason=reason, client=req.client, origin=origin,
            created_at=now)
        stored, _ = await self.store.record_job(job, None)
        return Decision(JobAction.DENY, stored.cost, reason, None), stored

    def charge_for(self, job: JobRecord, *, origin: str, now: datetime) -> LedgerEntry:
        """The ledger entry that charges a job. Its uuid is derived from the job's, so a job
        replayed by a Site Server or re-submitted by a provider is charged once."""
        return LedgerEntry(
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"pcnet:charge:{job.uuid}")),
            account_id=job.account_id, amount=-job.cost, kind=TransactionKind.CHARGE,
            reference=job.uuid, comment=f"{job.document_name or 'job'} ({job.total_pages} pages)"[:200],
            origin=origin, created_at=now)


def _action_for_status(status: JobStatus) -> JobAction:
    if status is JobStatus.DENIED or status is JobStatus.CANCELLED or status is JobStatus.EXPIRED:
        return JobAction.DENY
    if status is JobStatus.HELD:
        return JobAction.HOLD
    return JobAction.PRINT


def describe(decision: Decision) -> dict:
    """A decision as JSON for APIs and the pcnet/1 protocol."""
    return {"action": decision.action.value, "cost": format_money(decision.cost),
            "reason": decision.reason, "account_id": decision.account_id}
