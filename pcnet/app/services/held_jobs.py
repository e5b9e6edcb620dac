"""Held jobs: release (at the printer they wait on, or for Find-Me at a chosen one), cancel,
expiry, and what their print server reports (printed, where they stand).

A job on a printer with a hold mode is recorded `held` with its expected cost and no charge;
releasing it runs the job rules again at the printer it will print on (`JobService
.check_release`), marks it released (with who released it), and asks its print server to print
it (`job.release` pushed over pcnet/1); it is charged when the print server reports it printed.
Cancelling (or expiring) records who did it and asks the print server to delete the CUPS job
(now, or when it reconnects and asks `job.status`).

Who may: an administrator any job; a user their own jobs (another user's job is "does not
exist", as a missing one); a print server only the jobs of its own printers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from twisted.internet import defer
from twisted.logger import Logger

from pcnet.app.jobs import utcnow
from pcnet.app.services._base import Service
from pcnet.app.services.actor import SCHEDULER, Actor
from pcnet.domain import rules as R
from pcnet.domain.model import HoldMode, JobRecord, JobStatus, Printer
from pcnet.errors import Conflict, Forbidden, NotFound, PcnetError
from pcnet.net.line import LinkDown, RemoteError
from pcnet.net.messages import JobCancel, JobRelease

log = Logger(namespace="pcnet.app.services.held_jobs")

#: How long the server waits for a provider to act on a release or a cancel.
PUSH_TIMEOUT = 30.0


class ProviderOffline(PcnetError):
    """The print server holding a job is not connected, so the job cannot be released now."""

    code = "provider_offline"
    http_status = 503


class HeldJobService(Service):
    def __init__(self, ctx, services, sessions):
        super().__init__(ctx, services)
        self.sessions = sessions
        self.hold_expiry = timedelta(hours=ctx.settings.hold_expiry_hours)
        # Jobs whose release is under way (pushed, not yet answered): not released twice, not
        # expired meanwhile.
        self._releasing: set[str] = set()

    # --- reading ---------------------------------------------------------------------------

    async def list(self, *, user=None, printer=None, offset: int = 0, limit: int = 100):
        """(held jobs, total), newest first; `user` and `printer` (ids or names) narrow it."""
        filters = {}
        if user is not None:
            filters["user_id"] = (await self.services.users.get(user)).id
        if printer is not None:
            filters["printer_id"] = (await self.services.printers.get(printer)).id
        return await self.store.list_jobs(offset, limit, status=JobStatus.HELD, **filters)

    async def job_of(self, actor: Actor, job_ref: str | int) -> JobRecord:
        """The job (by uuid, or by its job log id) if `actor` may act on it: an administrator
        any job, a user only their own (another user's job is NotFound, as a missing one)."""
        try:
            job = await self.services.jobs.get(job_ref)
        except NotFound:
            job = None
        if job is not None and (actor.admin or (actor.kind == "user" and job.user_id is not None
                                                and job.user_id == actor.user_id)):
            return job
        if job is not None and actor.kind != "user":
            raise Forbidden(f"{actor.label} may not act on held jobs")
        raise NotFound(f"job {job_ref} does not exist")

    # --- release ---------------------------------------------------------------------------

    async def release(self, actor: Actor, job_ref: str | int, *, printer=None) -> JobRecord:
        """Release a held job (by uuid or job log id); a Find-Me job at `printer` (an id or
        name: same page description language, same print server). The job prints, and is
        charged, when its print server reports it. 409 (Conflict) when it is not held,
        InsufficientFunds / JobDenied when the rules refuse it now, ProviderOffline when its
        print server is not connected."""
        job = await self.job_of(actor, job_ref)
        uuid = job.uuid
        if job.status is not JobStatus.HELD or uuid in self._releasing:
            raise Conflict(f"job {uuid} is {job.status.value}, not held")
        held_on = await self.services.jobs.directory.printer(job.printer_id)
        target = await self._release_target(held_on, printer)
        # The rules of a live decision at the printer it will print on (InsufficientFunds,
        # JobDenied): the account may have been emptied, disabled or taken away meanwhile.
        await self.services.jobs.check_release(job, target)
        session = self.sessions.session("provider", held_on.server)
        if session is None:
            raise ProviderOffline(f"print server {held_on.server!r} is not connected; "
                                  "release the job when it is back")
        push = (JobRelease(uuid) if target.id == held_on.id else
                JobRelease(uuid, target_queue=target.queue, target_printer_id=target.id))
        where = f" at {target.name}" if target.id != held_on.id else ""
        # Released in the store before the provider acts: its job.printed may come at once.
        self._releasing.add(uuid)
        try:
            await self.store.update_job_status(
                uuid, JobStatus.RELEASED, reason=f"released{where} by {actor.name or actor.label}",
                by=actor.label,
                audit=self._audit(actor, "job.release", job, JobStatus.RELEASED, target))
        except BaseException:
            self._releasing.discard(uuid)
            raise
        self.ctx.publish("job", uuid)
        try:
            await session.request(push.OP, **push.to_wire()).addTimeout(PUSH_TIMEOUT, self.ctx.clock)
        except RemoteError as e:
            self._releasing.discard(uuid)
            if e.code == "not_found":
                await self._back(uuid, JobStatus.CANCELLED, f"gone from the print server: {e.message}")
                raise Conflict(f"job {uuid} is no longer on the print server: {e.message}") from None
            await self._back(uuid, JobStatus.HELD, job.reason)
            raise
        except (LinkDown, defer.TimeoutError) as e:
            self._releasing.discard(uuid)
            await self._back(uuid, JobStatus.HELD, job.reason)
            raise ProviderOffline(f"print server {held_on.server!r} did not answer: {e}") from None
        log.info("job {uuid} released{where} by {actor}", uuid=uuid, where=where, actor=actor.label)
        return replace_name(await self.store.get_job(uuid), target)

    async def _release_target(self, held_on: Printer, printer) -> Printer:
        if held_on.hold_mode is not HoldMode.FIND_ME:
            if printer is not None and (await self.services.printers.get(printer)).id != held_on.id:
                raise R.invalid("printer", "only Find-Me jobs may be released at another printer")
            return held_on
        if printer is None:
            raise R.invalid("printer", "a Find-Me job is released at a chosen printer")
        target = await self.services.printers.get(printer)
        if target.hold_mode is HoldMode.FIND_ME:
            raise R.invalid("printer", f"{target.name} is a Find-Me queue, not a printer")
        if target.server != held_on.server:
            raise R.invalid("printer", f"{target.name} is on print server {target.server!r}, "
                                       f"the job on {held_on.server!r}")
        if not target.pdl or target.pdl.lower() != (held_on.pdl or "").lower():
            raise R.invalid("printer", f"{target.name} speaks {target.pdl or 'an unknown language'}, "
                                       f"the job {held_on.pdl or 'an unknown language'}: pick a "
                                       "printer of the same page description language")
        return target

    async def _back(self, uuid: str, status: JobStatus, reason: str) -> None:
        """A release the print server could not carry out: the job is held again (or, gone
        from the print server, cancelled)."""
        await self.store.update_job_status(uuid, status, reason=reason, by="")
        self.ctx.publish("job", uuid)

    # --- cancel and expiry -----------------------------------------------------------------

    async def cancel(self, actor: Actor, job_ref: str | int, *,
                     reason: str | None = None) -> JobRecord:
        """Cancel a held (or released) job (by uuid or job log id): never printed nor charged;
        its print server deletes it (now, or when it reconnects). The job log says who
        cancelled it and why."""
        job = await self.job_of(actor, job_ref)
        if reason is not None:
            R.REASON.check(reason, "reason")
        if actor.kind == "user" and not actor.admin:
            text = f"cancelled by {actor.name}" + (f": {reason}" if reason else "")
        else:
            text = reason or "cancelled by an administrator"
        return await self._cancel(actor, job, text, JobStatus.CANCELLED)

    async def _cancel(self, actor: Actor, job: JobRecord, reason: str, status: JobStatus) -> JobRecord:
        if job.status not in (JobStatus.HELD, JobStatus.RELEASED):
            raise Conflict(f"job {job.uuid} is {job.status.value}, not held")
        stored, _ = await self.store.update_job_status(
            job.uuid, status, reason=reason, by=actor.label,
            audit=self._audit(actor, "job.cancel", job, status, None))
        self.ctx.publish("job", job.uuid)
        printer = await self.services.jobs.directory.printer(job.printer_id)
        session = self.sessions.session("provider", printer.server)
        if session is not None:
            try:
                push = JobCancel(job.uuid, reason)
                await session.request(push.OP, **push.to_wire()).addTimeout(
                    PUSH_TIMEOUT, self.ctx.clock)
            except Exception as e:
                # The provider asks about its held jobs when it reconnects (job.status).
                log.warn("provider {node!r} did not confirm cancelling {uuid}: {error}",
                         node=printer.server, uuid=job.uuid, error=str(e))
        return replace_name(stored, printer)

    async def expire_due(self, actor: Actor = SCHEDULER) -> int:
        """Expire held jobs older than `[jobs] hold_expiry_hours` (their CUPS jobs are
        cancelled); how many."""
        if actor.kind not in ("scheduler", "system") and not actor.admin:
            raise Forbidden(f"{actor.label} may not expire held jobs")
        cutoff = utcnow(self.ctx.clock) - self.hold_expiry
        expired = 0
        while True:
            jobs, _ = await self.store.list_jobs(0, 100, status=JobStatus.HELD, until=cutoff)
            jobs = [j for j in jobs if j.uuid not in self._releasing]
            if not jobs:
                return expired
            for job in jobs:
                try:
                    await self._cancel(actor, job, "expired: not released in time",
                                       JobStatus.EXPIRED)
                    expired += 1
                except PcnetError as e:
                    log.warn("could not expire held job {uuid}: {error}", uuid=job.uuid, error=e.message)
                    return expired

    # --- what print servers report ---------------------------------------------------------

    async def _own(self, actor: Actor, uuid: str) -> tuple[JobRecord, Printer]:
        """A job held on a printer of the reporting print server."""
        if actor.kind != "provider":
            raise Forbidden("only an approved Print Provider may do this")
        job = await self.store.get_job(uuid)
        held_on = await self.services.jobs.directory.printer(job.printer_id)
        if held_on.server != actor.name:
            raise Forbidden(f"job {uuid} is not held on {actor.name!r}")
        return job, held_on

    async def status(self, actor: Actor, uuid: str) -> JobRecord:
        """Where a job held on the print server stands (a provider catching up)."""
        job, _ = await self._own(actor, uuid)
        return job

    async def printed(self, actor: Actor, uuid: str, *, printer_id: int | None = None):
        """A released held job printed (on `printer_id`, a Find-Me job's release target): it is
        charged now with that printer's cost model, and never twice. Fires with (JobRecord,
        Transaction | None); a job printed after it was cancelled, expired or denied is logged
        and not charged (its record is final)."""
        if actor.kind != "provider":
            raise Forbidden("only an approved Print Provider may do this")
        job = await self.store.get_job(uuid)
        if job.status is JobStatus.PRINTED:
            # Reported again (a replayed journal): charged once already, nothing more.
            return job, None
        job, held_on = await self._own(actor, uuid)
        if job.status in (JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.DENIED):
            # Cancelled or expired while the provider was releasing it: it printed anyway, but
            # a finished job's record is final. Logged for an administrator; acknowledged, so
            # the provider does not report it forever.
            log.warn("job {uuid} printed on {node} after it was {status}; not charged",
                     uuid=uuid, node=actor.name, status=job.status.value)
            return job, None
        target = held_on
        if printer_id is not None and printer_id != held_on.id:
            target = await self.services.jobs.directory.printer(printer_id)
            if target.server != actor.name:
                raise Forbidden(f"printer {target.name!r} belongs to {target.server!r}, "
                                f"not {actor.name!r}")
        reason = "released" if target.id == held_on.id else f"Find-Me: released from {held_on.name}"
        stored, txn = await self.services.jobs.charge_printed(job, target, actor, reason=reason)
        self._releasing.discard(uuid)
        log.info("job {uuid} printed on {printer}: charged {cost}", uuid=uuid, printer=target.name,
                 cost=str(-txn.amount) if txn is not None else "nothing")
        return replace_name(stored, target), txn

    def _audit(self, actor: Actor, action: str, job: JobRecord, status: JobStatus,
               target: Printer | None):
        """An administrator's release or cancel is audited; a user's own is in the job log."""
        if not actor.admin:
            return None
        after = {"status": status.value}
        if target is not None:
            after["printer"] = target.name
        return self.audit(actor, action, "job", subject=job, before={"status": job.status.value},
                          after=after)


def replace_name(job: JobRecord, printer: Printer) -> JobRecord:
    """`job` as shown: with the name of the printer it is on (or printed at)."""
    return replace(job, printer_name=printer.name) if printer.id == job.printer_id else job
