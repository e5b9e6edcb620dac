"""The pcnet/1 operations Print Providers call on the Application Server: thin adapters that
read each request with its message type (`pcnet.net.messages`), call the service layer as the
provider (`Actor.for_node("provider", node, address)`), and answer with the reply type.

Providers call (docs/provider.md has the fields):

- `printers.register`: the CUPS queues a provider manages become printers (found by
  `(provider node, queue)`, created on first sight); the reply gives each printer's id, hold mode,
  failure mode and page description language, which the provider caches;
- `job.submit`: the decision for a job (`JobService.submit`), idempotent on the job uuid;
- `job.printed`: a released held job printed: it is charged now, with the cost model of the
  printer it printed on (a Find-Me job: the release target), and never twice;
- `job.offline`: a job the provider printed while no server answered (failure mode
  `print-log-later`), replayed from its journal: `JobService.record_offline` applies the same
  validation, job limits and account rules as a live decision; a job that passes is charged
  without the balance guard (it has printed), one that does not is recorded with its problem
  and charged as `[jobs] offline_policy` says; idempotent on the uuid;
- `job.status`: where a held job stands (a provider catching up after an outage);
- `journal.quarantined`: a journal entry the provider set aside (the server refused it, or
  failed on it), or one it replayed at last after a retry, so that administrators see it in
  `GET /api/v1/journal-quarantine` without logging onto the print server.

What the server pushes (`job.release`, `job.cancel`, `journal.retry`) is the held-job and
quarantine services' (`pcnet.app.services.held_jobs`, `.quarantine`). Every field of every
operation is checked before it reaches the services: a wrong type, a number outside what the
job log holds, text with a NUL character or a lone surrogate, an over-long string or an
impossible time is an `invalid` error reply naming the field, never `internal`.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from pcnet.app.services import Actor
from pcnet.errors import Forbidden, NotFound
from pcnet.net import messages as M
from pcnet.net.line import Operations
from pcnet.net.registry import peer_ip


class ProviderOps:
    """The Application Server's side of the Print Provider conversation (see module doc),
    over `services` (a `pcnet.app.services.Services`)."""

    def __init__(self, services):
        self.services = services
        self.clock = services.clock

    def register(self, ops: Operations) -> Operations:
        """Add the provider operations to a pcnet/1 `Operations` registry."""
        for name, method in (
            (M.PrintersRegister.OP, self.op_printers_register),
            (M.JobSubmit.OP, self.op_job_submit),
            (M.JobPrinted.OP, self.op_job_printed),
            (M.JobOffline.OP, self.op_job_offline),
            (M.JobStatusQuery.OP, self.op_job_status),
            (M.JournalQuarantined.OP, self.op_journal_quarantined),
        ):
            ops.register(name, _handler(method))
        return ops

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _provider(session) -> Actor:
        """The calling provider as the services' actor (only approved providers may call)."""
        if getattr(session, "role", None) != "provider" or not getattr(session, "node", None):
            raise Forbidden("only an approved Print Provider may do this")
        ip = peer_ip(getattr(session, "peer", None))
        return Actor.for_node("provider", session.node, str(ip) if ip is not None else "")

    async def _printer_id(self, actor: Actor, job: M.JobSubmit) -> int:
        """The printer a job names: `printer_id`, else its `queue` on the calling provider."""
        if job.printer_id is not None:
            return job.printer_id
        printer = await self.services.printers.find_queue(actor.name, job.queue)
        if printer is None:
            raise NotFound(f"no printer for queue {job.queue!r} on {actor.name!r}: register it first")
        return printer.id

    def _info(self, printer) -> M.PrinterInfo:
        return M.PrinterInfo.of(printer, self.services.jobs.limits)

    # --- pcnet/1 operations ------------------------------------------------------------------------

    async def op_printers_register(self, session, msg: dict) -> dict:
        actor = self._provider(session)
        request = M.PrintersRegister.parse(msg)
        printers = await self.services.printers.register_queues(
            actor, [(q.queue, q.location) for q in request.printers])
        return M.PrintersRegistered(tuple(self._info(p) for p in printers)).to_wire()

    async def op_job_submit(self, session, msg: dict) -> dict:
        actor = self._provider(session)
        job = M.JobSubmit.parse(msg)
        printer_id = await self._printer_id(actor, job)
        decision, record = await self.services.jobs.submit(job.request(printer_id, actor.name), actor)
        # The printer as it is now: the provider refreshes its cached failure mode from this.
        printer = await self.services.jobs.directory.printer(printer_id)
        return M.JobDecision.of(decision, record, self._info(printer)).to_wire()

    async def op_job_printed(self, session, msg: dict) -> dict:
        actor = self._provider(session)
        report = M.JobPrinted.parse(msg)
        stored, txn = await self.services.held_jobs.printed(actor, report.uuid,
                                                            printer_id=report.printer_id)
        if txn is None:
            # Reported again, or printed after it was cancelled: charged once, or not at all.
            charged = (stored.status.value == "printed" and stored.account_id is not None
                       and stored.cost != 0)
            return M.ChargeReply(stored.status.value, stored.cost, charged).to_wire()
        return M.ChargeReply(stored.status.value, -txn.amount, True).to_wire()

    async def op_job_offline(self, session, msg: dict) -> dict:
        actor = self._provider(session)
        offline = M.JobOffline.parse(msg, self.clock.seconds())
        printer_id = await self._printer_id(actor, offline.job)
        stored, txn = await self.services.jobs.record_offline(
            offline.job.request(printer_id, actor.name), actor, printed_at=offline.printed_at)
        return M.ChargeReply(stored.status.value, stored.cost, txn is not None,
                             problem=stored.problem).to_wire()

    async def op_job_status(self, session, msg: dict) -> dict:
        actor = self._provider(session)
        job = await self.services.held_jobs.status(actor, M.JobStatusQuery.parse(msg).uuid)
        return M.JobStatusReply(job.status.value).to_wire()

    async def op_journal_quarantined(self, session, msg: dict) -> dict:
        """A provider reports a journal entry it set aside (`state` quarantined, with the error
        it got) or one it replayed at last after a retry (`state` resolved)."""
        actor = self._provider(session)
        report = M.JournalQuarantined.parse(msg, self.clock.seconds())
        entry = await self.services.quarantine.report(
            actor, key=report.key, kind=report.kind, job_uuid=report.uuid,
            error_code=report.error_code, error_message=report.error_message,
            record=report.record, state=report.state, quarantined_at=report.quarantined_at)
        return {"id": entry.id, "state": entry.state}


def _handler(method):
    def handle(session, msg):
        return Deferred.fromCoroutine(method(session, msg))
    return handle
