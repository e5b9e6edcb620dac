"""The job service: decide what happens to a job, charge it and write it to the job log.

This is the Application Server's hot path (every print goes through `submit`). It reads the
printer, the user and the account through `JobDirectory` (`pcnet.app.jobs`), an in-process
cache, asks the pure decision rules in `pcnet.domain.decision`, and writes the job log row and
its charge in one store transaction. The store's guard is the final word on balances: if a
concurrent job emptied the account between the read and the write, the job is denied then.

Every way into the ledger goes through here, with one validation (`validate_request`) and one
set of rules (the job limits and the account-access rules of `pcnet.domain.decision`): live
submissions (`submit`, pcnet/1 `job.submit`) and imports (`import_job`, the admin API), jobs
printed while no server answered (`record_offline`: a Print Provider's journal, later a Site
Server's replay), releases of held jobs (`check_release`) and held jobs that printed
(`charge_printed`). Each publishes a `job` change event, and an `account` event when it moved a
balance.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import replace
from datetime import datetime, timedelta

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pcnet.app.events import ChangeEvent
from pcnet.app.jobs import JobDirectory, utcnow
from pcnet.app.services.actor import SYSTEM, Actor
from pcnet.domain import rules as R
from pcnet.domain.cost import job_cost
from pcnet.domain.decision import DenyReason, check_limits, decide, settle_offline
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
from pcnet.errors import Conflict, Forbidden, InsufficientFunds, JobDenied, NotFound
from pcnet.money import ZERO, format_money

log = Logger(namespace="pcnet.app.jobs")

_STATUS_FOR_ACTION = {
    JobAction.PRINT: JobStatus.PRINTED,
    JobAction.DENY: JobStatus.DENIED,
    JobAction.HOLD: JobStatus.HELD,
}

#: The reason recorded for a job a provider printed while no server answered.
OFFLINE_REASON = "printed while the server was unavailable"

#: Actors that submit jobs for the printers of their own print server.
_NODE_KINDS = frozenset({"provider", "site", "device"})


def validate_request(req: JobRequest) -> None:
    """The one check of what a job claims, for every way into the job log: refuse what cannot
    be a job at all before anything is read or written (`InvalidInput` naming the field).

    Counts must be whole numbers the job log can store (up to `MAX_COUNT`); a job that is
    merely bigger than the server's job limits is a job, and the decision denies it (or, when it
    printed offline, records it with its problem)."""
    R.JOB_USERNAME.check(req.username, "username")
    R.JOB_PAGES.check(req.pages, "pages")
    R.JOB_PAGES.check(req.colour_pages, "colour_pages")
    R.JOB_COPIES.check(req.copies, "copies")
    if req.colour_pages > req.pages:
        raise R.invalid("colour_pages", f"{req.colour_pages} must be between 0 and pages ({req.pages})")
    R.boolean(req.duplex, "duplex")
    R.PAPER_SIZE.check(req.paper_size, "paper_size")
    R.DOCUMENT_NAME.check(req.document_name, "document_name")
    R.CLIENT.check(req.client, "client")


def origin_of(actor: Actor) -> str:
    """What the ledger and the job log record as where a job came from: the node's name for a
    node, `app` for this server (an import, a release by an administrator)."""
    return actor.name if actor.kind in _NODE_KINDS else "app"


class JobService:
    """Decisions, charges and the job log (see the module doc). Made by `Services`; its
    settings (`ServiceSettings`): the job limits, the offline policy, the default paper size.
    """

    def __init__(self, ctx, services):
        self.ctx = ctx
        self.store = ctx.store
        self.clock = ctx.clock
        self.services = services
        self.directory = JobDirectory(ctx.store)
        self.limits = ctx.settings.job_limits
        self.offline_policy = ctx.settings.offline_policy
        self.paper_size = ctx.settings.paper_size
        self.metrics = ctx.metrics
        #: The account whose charge is being published (see `_published`): the directory has
        #: that balance already, from the ledger row this service wrote.
        self.charging: int | None = None
        ctx.bus.subscribe(self._follow, kinds=JobDirectory.FOLLOWS)

    def _follow(self, event: ChangeEvent) -> None:
        """The one subscriber of the job path's cache: forget what a change event names (the
        cache must never decide on a changed printer, user or account), except the event this
        service publishes for its own charge (`charging`): the directory keeps the balance of
        the ledger row it has just written rather than reading the account back on every job.
        Any other account event, and every event heard from another process (`local=False`),
        forgets the account."""
        if (event.kind == "account" and event.local and self.charging is not None
                and event.id == self.charging):
            return
        self.directory.changed(event)

    def _published(self, stored: JobRecord, txn, op: str = "create") -> None:
        """The events of a job written: the job, and its account when a charge moved it."""
        bus = self.ctx.bus
        bus.publish(ChangeEvent("job", stored.uuid, op))
        if txn is not None:
            self.directory.saw_transaction(txn)
            self.charging = txn.account_id
            try:
                bus.publish(ChangeEvent("account", txn.account_id, "update"))
            finally:
                self.charging = None

    def _request(self, req: JobRequest) -> JobRequest:
        if not req.paper_size:
            req = replace(req, paper_size=self.paper_size)
        validate_request(req)
        return req

    async def _printer_for(self, actor: Actor, printer_id: int) -> Printer:
        """The printer of a job, which a node may only name for its own print server."""
        printer = await self.directory.printer(printer_id)
        if actor.kind in _NODE_KINDS:
            if printer.server != actor.name:
                raise Forbidden(f"printer {printer.name!r} belongs to {printer.server!r}, "
                                f"not {actor.name!r}")
        elif not actor.admin:
            raise Forbidden(f"{actor.label} may not submit jobs")
        return printer

    # --- the job log -----------------------------------------------------------------------------

    async def get(self, ref: str | int) -> JobRecord:
        """A job by its uuid (a str), or by the integer id of its job log row; NotFound."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return await self.store.get_job_by_id(ref)
        return await self.store.get_job(ref)

    async def list(self, offset: int = 0, limit: int = 100, *, user=None, printer=None,
                   account=None, **filters):
        """(jobs, total) newest first; `user`, `printer`, `account` are ids or names, the
        other filters those of `IStore.list_jobs` (status, since, until, problem)."""
        if user is not None:
            filters["user_id"] = (await self.services.users.get(user)).id
        if printer is not None:
            filters["printer_id"] = (await self.services.printers.get(printer)).id
        if account is not None:
            filters["account_id"] = (await self.services.accounts.get(account)).id
        return await self.store.list_jobs(offset, limit, **filters)

    # --- live jobs -----------------------------------------------------------------------------

    def _measured(self, d: Deferred, path: str, outcome) -> Deferred:
        """Count the decision `d` fires with in the metrics: `outcome(result)` is (action,
        charged)."""
        metrics = self.metrics
        if metrics is None:
            return d
        started = metrics.timer()

        def count(result):
            action, charged = outcome(result)
            metrics.job_decided(path, action, charged, metrics.timer() - started)
            return result

        return d.addCallback(count)

    def submit(self, req: JobRequest, actor: Actor = SYSTEM) -> Deferred:
        """Decide and record a job. Fires with (Decision, JobRecord)."""
        return self._measured(Deferred.fromCoroutine(self._submit(req, actor)), "submit",
                              lambda r: (r[0].action.value,
                                         r[0].action is JobAction.PRINT and bool(r[1].cost)))

    async def _submit(self, req: JobRequest, actor: Actor):
        req = self._request(req)
        origin = origin_of(actor)
        now = utcnow(self.clock)
        job_uuid = req.uuid or str(uuidlib.uuid4())
        printer = await self._printer_for(actor, req.printer_id)
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
        self._published(stored, txn)
        if stored.status is not job.status:
            # The uuid was seen before: report what was decided then, not now.
            decision = Decision(_action_for_status(stored.status), stored.cost, stored.reason,
                                stored.account_id)
        # The record as written (its printer_name is the store's to fill when read: a copy
        # here would cost the hot path more than the rest of this method's own work).
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
        self._published(stored, None)
        return Decision(JobAction.DENY, stored.cost, reason, None), stored

    # --- jobs printed or copied where pcnet does not track them (the admin API's import) -----

    async def import_job(self, actor: Actor, *, username: str, printer, pages: int,
                         colour_pages: int = 0, duplex: bool = False, copies: int = 1,
                         paper_size: str = "", document_name: str = "", account=None,
                         client: str = "", uuid: str | None = None):
        """Decide, charge and log a job reported from outside (PaperCut's `processJob`): the
        same rules as a printed job. `printer` and `account` (a shared account, or None for
        the personal one) are ids or names. Idempotent on `uuid`; the uuid of a job recorded
        with other details is a Conflict (`idempotency_conflict`). A denied job is a decision,
        not an error. Fires with (Decision, JobRecord, the charged Account or None)."""
        if not actor.admin:
            raise Forbidden(f"{actor.label} may not import jobs")
        target = await self.services.printers.get(printer)
        account_id = None if account is None else (await self.services.accounts.get(account)).id
        req = JobRequest(username=username, printer_id=target.id, pages=pages,
                         colour_pages=colour_pages, duplex=duplex, copies=copies,
                         paper_size=paper_size, document_name=document_name,
                         account_id=account_id, client=client, uuid=uuid)
        decision, job = await self.submit(req, actor)
        if (job.username != req.username or job.printer_id != req.printer_id or job.pages != req.pages
                or job.colour_pages != req.colour_pages or job.copies != req.copies
                or job.duplex != req.duplex or job.document_name != req.document_name):
            raise Conflict(f"uuid: job {job.uuid} was already recorded with different details",
                           code="idempotency_conflict")
        charged = None
        if decision.account_id is not None:
            charged = await self.store.get_account(decision.account_id)
        return decision, replace(job, printer_name=target.name), charged

    # --- jobs that printed while no server answered ------------------------------------------

    def record_offline(self, req: JobRequest, actor: Actor, *,
                       printed_at: datetime | None = None) -> Deferred:
        """Record a job that has printed while no server answered (see `_record_offline`).
        Fires with (JobRecord, Transaction | None): the stored job and its charge."""
        return self._measured(Deferred.fromCoroutine(self._record_offline(req, actor, printed_at)),
                              "offline", lambda r: ("print", r[1] is not None))

    async def _record_offline(self, req: JobRequest, actor: Actor, printed_at):
        """The same validation and rules as `submit`, but the job has printed, so it is never
        denied: it is recorded printed and charged without the balance guard; one that breaks
        the job limits or the account rules is recorded with its problem and charged as the
        offline policy says (`settle_offline`), and logged. Idempotent on the uuid: a job the
        server decided before the provider gave up waiting keeps that decision (a held one is
        charged as printed now: it printed)."""
        req = self._request(req)
        origin = origin_of(actor)
        now = utcnow(self.clock)
        printer = await self._printer_for(actor, req.printer_id)
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
            stored, txn = await self.charge_printed(stored, printer, actor, reason=OFFLINE_REASON)
        else:
            self._published(stored, txn)
            if stored.status is not JobStatus.PRINTED:
                # Decided (denied) before the provider gave up waiting; a decided job's record
                # is final, so the print is logged for an administrator, not charged.
                log.warn("job {uuid} was {status} by the server but printed offline on {printer}",
                         uuid=stored.uuid, status=stored.status.value, printer=printer.name)
        if stored.problem:
            log.warn("offline job {uuid} of {user} on {printer} (from {origin}): {problem}",
                     uuid=stored.uuid, user=stored.username, printer=printer.name, origin=origin,
                     problem=stored.problem)
        return replace(stored, printer_name=printer.name), txn

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

    async def charge_printed(self, job: JobRecord, printer: Printer, actor: Actor, *,
                             reason: str) -> tuple[JobRecord, object]:
        """Move a held (or released) job to printed on `printer`, charged with its cost model
        (unguarded: it has printed). For a Find-Me job that is the printer it was released at,
        so the job log shows where it printed and what it cost there."""
        origin = origin_of(actor)
        cost = job_cost(printer.cost_model, pages=job.pages, colour_pages=job.colour_pages,
                        duplex=job.duplex, copies=job.copies, paper_size=job.paper_size)
        charge = None
        if job.account_id is not None and cost:
            charge = self.charge_for(replace(job, cost=cost), origin=origin, now=utcnow(self.clock))
        stored, txn = await self.store.mark_job_printed(job.uuid, printer_id=printer.id, cost=cost,
                                                        reason=reason, charge=charge, guard=False)
        self._published(stored, txn, op="update")
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
