"""The job service: decide what happens to a job, charge it and write it to the job log.

This is the Application Server's hot path (every print goes through `submit`). It reads the
printer, the user and the account through `JobDirectory`, an in-process cache (see below), asks
the pure decision rules in `pcnet.domain.decision`, and writes the job log row and its charge in
one store transaction. The store's guard is the final word on balances: if a concurrent job
emptied the account between the read and the write, the job is denied then.

Every way into the ledger goes through here, with one validation (`validate_request`) and one
set of rules (the job limits and the account-access rules of `pcnet.domain.decision`): live
submissions and imports (`submit`), jobs printed while no server answered (`record_offline`:
a Print Provider's journal, later a Site Server's replay), releases of held jobs
(`check_release`) and held jobs that printed (`charge_printed`).
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pcnet.domain.cost import job_cost
from pcnet.domain.decision import DEFAULT_LIMITS, DenyReason, check_limits, decide, settle_offline
from pcnet.domain.model import (
    MAX_COUNT,
    Account,
    Decision,
    JobAction,
    JobLimits,
    JobRecord,
    JobRequest,
    JobStatus,
    LedgerEntry,
    OfflinePolicy,
    Printer,
    TransactionKind,
    User,
)
from pcnet.errors import InsufficientFunds, InvalidInput, JobDenied, NotFound
from pcnet.money import ZERO, format_money

log = Logger(namespace="pcnet.app.jobs")

_STATUS_FOR_ACTION = {
    JobAction.PRINT: JobStatus.PRINTED,
    JobAction.DENY: JobStatus.DENIED,
    JobAction.HOLD: JobStatus.HELD,
}

#: The reason recorded for a job a provider printed while no server answered.
OFFLINE_REASON = "printed while the server was unavailable"


def utcnow(clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), tz=timezone.utc)


def validate_request(req: JobRequest) -> None:
    """The one check of what a job claims, for every way into the job log: refuse what cannot
    be a job at all before anything is read or written (`InvalidInput` naming the field).

    Counts must be whole numbers the job log can store (up to `MAX_COUNT`); a job that is
    merely bigger than the server's job limits is a job, and the decision denies it (or, when it
    printed offline, records it with its problem)."""
    if not req.username:
        raise InvalidInput("username: required", field="username")
    for name, minimum in (("pages", 0), ("colour_pages", 0), ("copies", 1)):
        value = getattr(req, name)
        if type(value) is not int or not minimum <= value <= MAX_COUNT:
            raise InvalidInput(f"{name}: {value!r} is out of range ({minimum} to {MAX_COUNT})",
                               field=name)
    if req.colour_pages > req.pages:
        raise InvalidInput(f"colour_pages: {req.colour_pages} must be between 0 and pages "
                           f"({req.pages})", field="colour_pages")


class JobDirectory:
    """A read-through cache of what the decision needs: printers, users, accounts.

    Printers and users change rarely: they are cached until a change event names them
    (`follow(bus)`): this process's own writes are published on the bus as they commit, other
    processes' (a `pcnet` command, a second server on the same database) by the watcher
    (`pcnet.app.watch`). Account balances change with every job: the cache keeps the balance
    left by the newest ledger row this process has seen (by transaction id, so a late reply
    cannot roll it back), an event about the account forgets it, and the store's guard still
    refuses any charge a stale balance would have allowed (another server's charges are not
    notified, see migration postgres/0005: the guard catches them).
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

    def follow(self, bus):
        """Forget what every change event on `bus` names; returns the unsubscribe function."""
        return bus.subscribe(self.changed, kinds=self.FOLLOWS)

    def changed(self, event) -> None:
        """A change event: forget the record it names (every record of its kind for ANY)."""
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


class JobService:
    """Decisions, charges and the job log for the Application Server.

    `limits` are the server's job limits (`[jobs] max_copies`, `max_pages`, `max_total_pages`);
    `offline_policy` what is charged for an offline job that breaks the rules
    (`[jobs] offline_policy`, see `pcnet.domain.decision.settle_offline`)."""

    def __init__(self, store, clock, *, directory: JobDirectory | None = None,
                 limits: JobLimits = DEFAULT_LIMITS,
                 offline_policy: OfflinePolicy = OfflinePolicy.FLAG, metrics=None):
        self.store = store
        self.clock = clock
        self.directory = directory or JobDirectory(store)
        self.limits = limits
        self.offline_policy = OfflinePolicy(offline_policy)
        #: `pcnet.app.metrics.ServerMetrics` (or None): every recorded decision is counted.
        self.metrics = metrics

    def _measured(self, d: Deferred, path: str, outcome) -> Deferred:
        """Count the decision `d` fires with: `outcome(result)` is (action, charged)."""
        metrics = self.metrics
        if metrics is None:
            return d
        started = metrics.timer()

        def count(result):
            action, charged = outcome(result)
            metrics.job_decided(path, action, charged, metrics.timer() - started)
            return result

        return d.addCallback(count)

    def submit(self, req: JobRequest, *, origin: str = "app") -> Deferred:
        """Decide and record a job. Fires with (Decision, JobRecord)."""
        return self._measured(Deferred.fromCoroutine(self._submit(req, origin)), "submit",
                              lambda r: (r[0].action.value,
                                         r[0].action is JobAction.PRINT and bool(r[1].cost)))

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
        decision = decide(req, printer, user, account, account_allowed=allowed, duplicate=duplicate,
                          limits=self.limits)
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

    async def _account_for(self, req: JobRequest, user: User, *,
                           fresh: bool = False) -> tuple[Account | None, bool]:
        """The account `req` asks to charge and whether `user` may charge it (the account
        rules of every path). `fresh`: read the balance from the store, not the cache."""
        get = self.store.get_account if fresh else self.directory.account
        if req.account_id is None or req.account_id == user.personal_account_id:
            if user.personal_account_id is None:
                return None, False
            return await get(user.personal_account_id), True
        try:
            account = await get(req.account_id)
        except NotFound:
            return None, False
        return account, await self.store.user_can_use_account(user.id, account.id)

    async def _record_unknown_user(self, req, printer, job_uuid, now, origin):
        # The job limits come first, as for everyone (and keep the cost inside the ledger).
        reason = check_limits(req.pages, req.copies, self.limits)
        reason = reason or f"{DenyReason.UNKNOWN_USER}: {req.username}"
        job = JobRecord(
            uuid=job_uuid, user_id=None, username=req.username, printer_id=printer.id,
            account_id=None, pages=req.pages, colour_pages=req.colour_pages, duplex=req.duplex,
            copies=req.copies, paper_size=req.paper_size, document_name=req.document_name,
            cost=ZERO, status=JobStatus.DENIED, reason=reason, client=req.client, origin=origin,
            created_at=now)
        stored, _ = await self.store.record_job(job, None)
        return Decision(JobAction.DENY, stored.cost, reason, None), stored

    # --- jobs that printed while no server answered ------------------------------------------

    def record_offline(self, req: JobRequest, *, printed_at: datetime | None = None,
                       origin: str) -> Deferred:
        """Record a job that has printed while no server answered (see `_record_offline`).
        Fires with (JobRecord, Transaction | None): the stored job and its charge."""
        return self._measured(Deferred.fromCoroutine(self._record_offline(req, printed_at, origin)),
                              "offline", lambda r: ("print", r[1] is not None))

    async def _record_offline(self, req: JobRequest, printed_at, origin: str):
        """The same validation and rules as `submit`, but the job has printed, so it is never
        denied: it is recorded printed and charged without the balance guard; one that breaks
        the job limits or the account rules is recorded with its problem and charged as the
        offline policy says (`settle_offline`), and logged. Idempotent on the uuid: a job the
        server decided before the provider gave up waiting keeps that decision (a held one is
        charged as printed now: it printed)."""
        validate_request(req)
        now = utcnow(self.clock)
        printer = await self.directory.printer(req.printer_id)
        try:
            user = await self.directory.user(req.username)
        except NotFound:
            user = None
        account = personal = None
        allowed = False
        if user is not None:
            account, allowed = await self._account_for(req, user)
            if user.personal_account_id is not None:
                personal = await self.directory.account(user.personal_account_id)
        settled = settle_offline(req, printer, user, account, account_allowed=allowed,
                                 personal=personal, limits=self.limits, policy=self.offline_policy)
        reason = OFFLINE_REASON + (f"; {settled.problem}" if settled.problem else "")
        job = JobRecord(
            uuid=req.uuid, user_id=user.id if user else None, username=req.username,
            printer_id=printer.id,
            account_id=settled.account_id if settled.account_id is not None else (
                account.id if account is not None else None),
            pages=req.pages, colour_pages=req.colour_pages, duplex=req.duplex, copies=req.copies,
            paper_size=req.paper_size, document_name=req.document_name, cost=settled.cost,
            status=JobStatus.PRINTED, reason=reason, client=req.client, origin=origin,
            created_at=printed_at or now, problem=settled.problem)
        charge = None
        if settled.account_id is not None and settled.cost:
            as_charged = settled.charged_job
            charge = self.charge_for(replace(job, pages=as_charged.pages, copies=as_charged.copies),
                                     origin=origin, now=now)
        stored, txn = await self.store.record_job(job, charge, guard=False)
        if stored.status in (JobStatus.HELD, JobStatus.RELEASED):
            # The server held this uuid before the provider gave up waiting, but the job
            # printed: it is charged as printed now.
            stored, txn = await self.charge_printed(stored, printer, origin=origin,
                                                    reason=OFFLINE_REASON)
        elif stored.status is not JobStatus.PRINTED:
            # Decided (denied) before the provider gave up waiting; a decided job's record is
            # final, so the print is logged for an administrator, not charged.
            log.warn("job {uuid} was {status} by the server but printed offline on {printer}",
                     uuid=stored.uuid, status=stored.status.value, printer=printer.name)
        if stored.problem:
            log.warn("offline job {uuid} of {user} on {printer} (from {origin}): {problem}",
                     uuid=stored.uuid, user=stored.username, printer=printer.name, origin=origin,
                     problem=stored.problem)
        if txn is not None:
            self.directory.saw_transaction(txn)
        return stored, txn

    # --- held jobs -------------------------------------------------------------------------------

    def check_release(self, job: JobRecord, target: Printer) -> Deferred:
        """May held `job` be released to print on `target` now? Fires with the Decision (print,
        with its cost at `target`), or fails with `InsufficientFunds` / `JobDenied` (the
        reason). The same rules as a live decision, the hold mode aside: the job limits, the
        printer and user states, `target`'s filters, the account rules (the user may have lost
        access since the job was held) and the balance, read fresh from the store."""
        return Deferred.fromCoroutine(self._check_release(job, target))

    async def _check_release(self, job: JobRecord, target: Printer) -> Decision:
        req = JobRequest(
            username=job.username, printer_id=target.id, pages=job.pages,
            colour_pages=job.colour_pages, duplex=job.duplex, copies=job.copies,
            paper_size=job.paper_size, document_name=job.document_name,
            account_id=job.account_id, client=job.client, uuid=job.uuid)
        try:
            user = await self.directory.user(job.username)
        except NotFound:
            raise JobDenied(f"cannot release job {job.uuid}: {DenyReason.UNKNOWN_USER}: "
                            f"{job.username}") from None
        account, allowed = await self._account_for(req, user, fresh=True)
        decision = decide(req, target, user, account, account_allowed=allowed, limits=self.limits,
                          releasing=True)
        if decision.action is not JobAction.DENY:
            return decision
        if decision.reason.startswith(DenyReason.INSUFFICIENT_FUNDS):
            raise InsufficientFunds(f"releasing costs {format_money(decision.cost)}, the balance "
                                    f"is {format_money(account.balance)}")
        raise JobDenied(f"cannot release job {job.uuid}: {decision.reason}")

    async def charge_printed(self, job: JobRecord, printer: Printer, *, origin: str,
                             reason: str) -> tuple[JobRecord, object]:
        """Move a held (or released) job to printed on `printer`, charged with its cost model
        (unguarded: it has printed). For a Find-Me job that is the printer it was released at,
        so the job log shows where it printed and what it cost there."""
        cost = job_cost(printer.cost_model, pages=job.pages, colour_pages=job.colour_pages,
                        duplex=job.duplex, copies=job.copies, paper_size=job.paper_size)
        charge = None
        if job.account_id is not None and cost:
            charge = self.charge_for(replace(job, cost=cost), origin=origin, now=utcnow(self.clock))
        stored, txn = await self.store.mark_job_printed(job.uuid, printer_id=printer.id, cost=cost,
                                                        reason=reason, charge=charge, guard=False)
        if txn is not None:
            self.directory.saw_transaction(txn)
        return stored, txn

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
