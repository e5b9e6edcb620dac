"""What the Application Server does for Print Providers: the pcnet/1 operations they call, the
held-job actions the admin API and the owners call, hold expiry, and the store-backed node
registry.

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

The server pushes `job.release` (with `target_queue` / `target_printer_id` for Find-Me),
`job.cancel` and `journal.retry` (an administrator asked for a quarantined entry to be sent
again) to the provider concerned. Charging happens when a job prints, never when it is held: a
held job is recorded `held` with its expected cost and no charge.

Every field of every operation is checked before it reaches the store: a wrong type, a number
outside what the job log holds, text with a NUL character or a lone surrogate (neither engine
can store them), an over-long string or an impossible time is an `invalid` error reply naming
the field, never `internal`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import uuid as uuidlib
from datetime import datetime, timedelta, timezone

from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from pcnet.app.jobs import JobService, describe, utcnow
from pcnet.domain.enrolment import DEFAULT_CODE_HOURS, approves_by_default, new_enrolment_code
from pcnet.domain.secrets import hash_token
from pcnet.domain.model import (
    MAX_COUNT,
    FailureMode,
    HoldMode,
    JobRecord,
    JobRequest,
    JobStatus,
    Printer,
)
from pcnet.errors import Conflict, Forbidden, InvalidInput, NotFound, PcnetError
from pcnet.interfaces import INodeRegistry
from pcnet.money import format_money
from pcnet.net.line import LinkDown, Operations, RemoteError
from pcnet.net.registry import NodeStatus, credential_digest, peer_ip

log = Logger(namespace="pcnet.app.provider_ops")

#: How long the server waits for a provider to act on a release or a cancel.
PUSH_TIMEOUT = 30.0


class ProviderOffline(PcnetError):
    """The print server holding a job is not connected, so the job cannot be released now."""

    code = "provider_offline"
    http_status = 503


# --- request fields ------------------------------------------------------------------------------

#: How far past the server's clock a provider's timestamp may be (clock skew between hosts);
#: anything later is not a time at which a job printed.
MAX_CLOCK_AHEAD = 86_400.0

#: The most a quarantined entry's record may hold, as JSON (an entry is one job's fields).
MAX_QUARANTINED_RECORD = 64 * 1024

_ENTRY_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _storable(value: str) -> bool:
    """Can both engines store this text? PostgreSQL refuses NUL characters, and a lone
    surrogate (JSON's "\\ud800") is not UTF-8 at all."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _str(msg: dict, key: str, *, required: bool = True, default: str = "", limit: int = 1000) -> str:
    value = msg.get(key, None)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{key}: required", field=key)
        return default
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"{key}: expected a string of at most {limit} characters", field=key)
    if not _storable(value):
        raise InvalidInput(f"{key}: must be UTF-8 text without NUL characters", field=key)
    return value


def _int(msg: dict, key: str, *, default: int | None = None, minimum: int = 0,
         maximum: int = MAX_COUNT) -> int:
    value = msg.get(key, default)
    if type(value) is not int or not minimum <= value <= maximum:
        raise InvalidInput(f"{key}: expected a whole number from {minimum} to {maximum}", field=key)
    return value


def _id(msg: dict, key: str) -> int | None:
    """An optional record id: a positive integer the store can hold."""
    if msg.get(key) is None:
        return None
    return _int(msg, key, minimum=1)


def _bool(msg: dict, key: str, default: bool = False) -> bool:
    value = msg.get(key, default)
    if type(value) is not bool:
        raise InvalidInput(f"{key}: expected true or false", field=key)
    return value


def _uuid(msg: dict, key: str = "uuid") -> str:
    value = _str(msg, key, limit=64)
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise InvalidInput(f"{key}: {value!r} is not a UUID", field=key) from None


def _timestamp(msg: dict, key: str, now: float) -> datetime | None:
    """An optional time in seconds since the epoch: after the epoch and not in the future
    (beyond `MAX_CLOCK_AHEAD` of clock skew)."""
    value = msg.get(key)
    if value is None:
        return None
    if (type(value) not in (int, float) or not math.isfinite(value) or value <= 0
            or value > now + MAX_CLOCK_AHEAD):
        raise InvalidInput(f"{key}: expected seconds since the epoch, not later than the "
                           "server's clock (give or take a day)", field=key)
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _printer_ref(msg: dict) -> tuple[int | None, str]:
    """The printer a request names: `printer_id`, else `queue` (both checked if given)."""
    printer_id = _id(msg, "printer_id")
    return printer_id, _str(msg, "queue", required=printer_id is None, limit=255)


def _job_request(msg: dict, node: str) -> dict:
    """A job's fields, all checked (the printer's id is added once it is found)."""
    return dict(
        username=_str(msg, "user", limit=255),
        pages=_int(msg, "pages"),
        colour_pages=_int(msg, "colour_pages", default=0),
        duplex=_bool(msg, "duplex"),
        copies=_int(msg, "copies", default=1, minimum=1),
        paper_size=_str(msg, "paper_size", required=False, default="A4", limit=64),
        document_name=_str(msg, "document_name", required=False, limit=255),
        account_id=_id(msg, "account_id"),
        client=node,
        uuid=_uuid(msg),
    )


def printer_info(p: Printer, limits) -> dict:
    """What a provider learns about one of its printers; `limits` (the server's `JobLimits`)
    let it refuse an over-limit job while no server answers."""
    return {"queue": p.queue, "id": p.id, "name": p.name, "hold_mode": p.hold_mode.value,
            "failure_mode": p.failure_mode.value, "pdl": p.pdl, "disabled": p.disabled,
            "limits": limits.to_json()}


def held_job_json(job: JobRecord, printer: Printer | None = None) -> dict:
    out = {
        "uuid": job.uuid, "username": job.username, "user_id": job.user_id,
        "printer_id": job.printer_id, "account_id": job.account_id,
        "document_name": job.document_name, "pages": job.pages, "colour_pages": job.colour_pages,
        "duplex": job.duplex, "copies": job.copies, "paper_size": job.paper_size,
        "cost": format_money(job.cost), "status": job.status.value, "reason": job.reason,
        "client": job.client, "created_at": job.created_at.isoformat() if job.created_at else None,
    }
    if printer is not None:
        out["printer"] = printer.name
        out["hold_mode"] = printer.hold_mode.value
    return out


# --- the operations ------------------------------------------------------------------------------


class ProviderOps:
    """The Application Server's side of the Print Provider conversation (see module doc).

    `sessions` maps `("provider", node)` to the node's live pcnet/1 session: give a
    `LineServerFactory.sessions` dict, or call `attach(factory)` for each listener's factory.
    """

    def __init__(self, store, jobs: JobService, clock, *, sessions=None,
                 hold_expiry_hours: float = 24.0):
        self.store = store
        self.jobs = jobs
        self.clock = clock
        # Each listener has its own LineServerFactory and so its own sessions dict.
        self._session_maps: list = [sessions] if sessions is not None else []
        self.hold_expiry = timedelta(hours=hold_expiry_hours)
        self._releasing: set[str] = set()

    def attach(self, factory) -> None:
        """Push to providers through this `LineServerFactory`'s sessions (call once per
        listener's factory)."""
        self._session_maps.append(factory.sessions)

    def register(self, ops: Operations) -> Operations:
        """Add the provider operations to a pcnet/1 `Operations` registry."""
        for name, method in (
            ("printers.register", self.op_printers_register),
            ("job.submit", self.op_job_submit),
            ("job.printed", self.op_job_printed),
            ("job.offline", self.op_job_offline),
            ("job.status", self.op_job_status),
            ("journal.quarantined", self.op_journal_quarantined),
        ):
            ops.register(name, _handler(method))
        return ops

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _provider_node(session) -> str:
        if getattr(session, "role", None) != "provider" or not getattr(session, "node", None):
            raise Forbidden("only an approved Print Provider may do this")
        return session.node

    async def _printer_for(self, node: str, msg: dict) -> Printer:
        printer_id, queue = _printer_ref(msg)
        if printer_id is not None:
            printer = await self.jobs.directory.printer(printer_id)
        else:
            printer = await self.store.find_printer(node, queue)
            if printer is None:
                raise NotFound(f"no printer for queue {queue!r} on {node!r}: register it first")
        if printer.server != node:
            raise Forbidden(f"printer {printer.name!r} belongs to {printer.server!r}, not {node!r}")
        return printer

    def _session(self, node: str):
        for sessions in self._session_maps:
            session = sessions.get(("provider", node))
            if session is not None and getattr(session, "connected", True):
                return session
        return None

    def connected_providers(self) -> list[str]:
        return sorted({node for sessions in self._session_maps for role, node in sessions
                       if role == "provider"})

    # --- pcnet/1 operations ------------------------------------------------------------------------

    async def op_printers_register(self, session, msg: dict) -> dict:
        node = self._provider_node(session)
        given = msg.get("printers")
        if not isinstance(given, list) or len(given) > 10_000:
            raise InvalidInput("printers: expected a list of at most 10000", field="printers")
        queues = []
        for i, item in enumerate(given):
            if not isinstance(item, dict):
                raise InvalidInput(f"printers[{i}]: expected an object", field=f"printers[{i}]")
            try:
                queues.append((_str(item, "queue", limit=255),
                               _str(item, "location", required=False, limit=255)))
            except InvalidInput as e:
                raise InvalidInput(f"printers[{i}].{e.message}",
                                   field=f"printers[{i}].{e.field}") from None
        # Every item checked before any is registered: a bad one changes nothing.
        out = []
        for queue, location in queues:
            printer = await self.store.find_printer(node, queue)
            if printer is None:
                printer = await self._create_printer(node, queue, location)
                log.info("provider {node!r}: new printer {name!r} (id {id}) for queue {queue!r}",
                         node=node, name=printer.name, id=printer.id, queue=queue)
            out.append(printer_info(printer, self.jobs.limits))
        return {"printers": out}

    async def _create_printer(self, node: str, queue: str, location: str) -> Printer:
        for name in (queue, f"{node}/{queue}"):
            try:
                return await self.store.create_printer(
                    name, server=node, queue=queue, location=location,
                    hold_mode=HoldMode.NONE, failure_mode=FailureMode.PRINT_LOG_LATER)
            except Conflict:
                continue
        raise Conflict(f"cannot name a printer for queue {queue!r} on {node!r}")

    async def op_job_submit(self, session, msg: dict) -> dict:
        node = self._provider_node(session)
        fields = _job_request(msg, node)
        printer = await self._printer_for(node, msg)
        decision, record = await self.jobs.submit(JobRequest(printer_id=printer.id, **fields),
                                                  origin=node)
        out = describe(decision)
        # The printer as it is now: the provider refreshes its cached failure mode from this.
        out.update(uuid=record.uuid, status=record.status.value,
                   printer=printer_info(printer, self.jobs.limits))
        return out

    async def op_job_printed(self, session, msg: dict) -> dict:
        node = self._provider_node(session)
        uuid = _uuid(msg)
        printer_id = _id(msg, "printer_id")
        job = await self.store.get_job(uuid)
        if job.status is JobStatus.PRINTED:
            # Reported again (a replayed journal): charged once already, nothing more.
            return {"status": job.status.value, "cost": format_money(job.cost),
                    "charged": job.account_id is not None and job.cost != 0}
        held_on = await self.jobs.directory.printer(job.printer_id)
        if held_on.server != node:
            raise Forbidden(f"job {uuid} is not held on {node!r}")
        if job.status in (JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.DENIED):
            # Cancelled or expired while the provider was releasing it: it printed anyway, but
            # a finished job's record is final. Logged for an administrator; acknowledged, so
            # the provider does not report it forever.
            log.warn("job {uuid} printed on {node} after it was {status}; not charged",
                     uuid=uuid, node=node, status=job.status.value)
            return {"status": job.status.value, "cost": format_money(job.cost), "charged": False}
        target = held_on
        if printer_id is not None and printer_id != held_on.id:
            target = await self._printer_for(node, msg)
        reason = "released" if target.id == held_on.id else f"Find-Me: released from {held_on.name}"
        stored, txn = await self.jobs.charge_printed(job, target, origin=node, reason=reason)
        self._releasing.discard(uuid)
        log.info("job {uuid} printed on {printer}: charged {cost}", uuid=uuid, printer=target.name,
                 cost=format_money(-txn.amount) if txn is not None else "nothing")
        return {"status": stored.status.value, "cost": format_money(-txn.amount if txn else 0),
                "charged": txn is not None}

    async def op_job_offline(self, session, msg: dict) -> dict:
        node = self._provider_node(session)
        printed_at = _timestamp(msg, "printed_at", self.clock.seconds())
        fields = _job_request(msg, node)
        printer = await self._printer_for(node, msg)
        stored, txn = await self.jobs.record_offline(JobRequest(printer_id=printer.id, **fields),
                                                     printed_at=printed_at, origin=node)
        return {"status": stored.status.value, "cost": format_money(stored.cost),
                "charged": txn is not None, "problem": stored.problem}

    async def op_job_status(self, session, msg: dict) -> dict:
        node = self._provider_node(session)
        job = await self.store.get_job(_uuid(msg))
        printer = await self.jobs.directory.printer(job.printer_id)
        if printer.server != node:
            raise Forbidden(f"job {job.uuid} is not held on {node!r}")
        return {"status": job.status.value}

    async def op_journal_quarantined(self, session, msg: dict) -> dict:
        """A provider reports a journal entry it set aside (`state` quarantined, with the error
        it got) or one it replayed at last after a retry (`state` resolved)."""
        node = self._provider_node(session)
        key = _str(msg, "key", limit=128)
        if not _ENTRY_KEY.match(key):
            raise InvalidInput("key: expected letters, digits, '.', '_' or '-'", field="key")
        kind = _str(msg, "kind", limit=64)
        job_uuid = _uuid(msg) if msg.get("uuid") not in (None, "") else ""
        error = msg.get("error")
        if not isinstance(error, dict):
            raise InvalidInput("error: expected an object with code and message", field="error")
        try:
            error_code = _str(error, "code", limit=64)
            error_message = _str(error, "message", required=False, limit=2000)
        except InvalidInput as e:
            raise InvalidInput(f"error.{e.message}", field=f"error.{e.field}") from None
        record = msg.get("record")
        if not isinstance(record, dict):
            raise InvalidInput("record: expected an object (the entry's fields)", field="record")
        # Stored as ASCII JSON text: NULs and lone surrogates in it are escaped, not refused.
        if len(json.dumps(record)) > MAX_QUARANTINED_RECORD:
            raise InvalidInput(f"record: more than {MAX_QUARANTINED_RECORD} bytes as JSON",
                               field="record")
        state = _str(msg, "state", required=False, default="quarantined", limit=32)
        if state not in ("quarantined", "resolved"):
            raise InvalidInput("state: expected quarantined or resolved", field="state")
        quarantined_at = _timestamp(msg, "quarantined_at", self.clock.seconds())
        entry = await self.store.report_quarantined(
            node, key, kind=kind, job_uuid=job_uuid, error_code=error_code,
            error_message=error_message, record=record, state=state, quarantined_at=quarantined_at)
        if state == "quarantined":
            log.error("provider {node!r} quarantined journal entry {key} ({kind}, job {uuid}): "
                      "{code}: {message}", node=node, key=key, kind=kind, uuid=job_uuid or "?",
                      code=error_code, message=error_message)
        else:
            log.info("provider {node!r} replayed quarantined journal entry {key}", node=node,
                     key=key)
        return {"id": entry.id, "state": entry.state}

    # --- quarantined journal entries: what the admin API does ------------------------------------

    def retry_quarantined(self, entry_id: int) -> Deferred:
        """Ask the provider holding a quarantined entry to put it back in its journal (see
        `_retry_quarantined`); a Deferred of the pcnet.store.QuarantinedEntry."""
        return Deferred.fromCoroutine(self._retry_quarantined(entry_id))

    async def _retry_quarantined(self, entry_id: int):
        """The provider moves the entry back into its journal and replays it at once, then
        reports the outcome (`journal.quarantined`: resolved, or quarantined again with the new
        error). Needs the provider connected."""
        entry = await self.store.get_quarantined(entry_id)
        if entry.state == "resolved":
            raise Conflict(f"journal entry {entry.key} of {entry.node!r} was replayed already")
        session = self._session(entry.node)
        if session is None:
            raise ProviderOffline(f"print server {entry.node!r} is not connected; retry the entry "
                                  "when it is back")
        try:
            reply = await session.request("journal.retry", keys=[entry.key]).addTimeout(
                PUSH_TIMEOUT, self.clock)
        except (LinkDown, defer.TimeoutError) as e:
            raise ProviderOffline(f"print server {entry.node!r} did not answer: {e}") from None
        restored = reply.get("restored") if isinstance(reply, dict) else None
        if not isinstance(restored, list) or entry.key not in restored:
            raise Conflict(f"print server {entry.node!r} no longer holds journal entry "
                           f"{entry.key} in quarantine")
        log.info("asked provider {node!r} to retry journal entry {key}", node=entry.node,
                 key=entry.key)
        return await self.store.set_quarantined_state(entry.id, "retrying")

    # --- held jobs: what the admin API and the owners do ---------------------------------------------

    def list_held(self, **kw) -> Deferred:
        """(held jobs as JSON, total), newest first; filters: user_id, printer_id, offset, limit."""
        return Deferred.fromCoroutine(self._list_held(**kw))

    async def _list_held(self, *, user_id: int | None = None, printer_id: int | None = None,
                        offset: int = 0, limit: int = 100) -> tuple[list[dict], int]:
        jobs, total = await self.store.list_jobs(offset, limit, user_id=user_id,
                                                 printer_id=printer_id, status=JobStatus.HELD)
        out = []
        for job in jobs:
            try:
                printer = await self.jobs.directory.printer(job.printer_id)
            except NotFound:
                printer = None
            out.append(held_job_json(job, printer))
        return out, total

    def release(self, uuid: str, *, printer_id: int | None = None, by: str = "") -> Deferred:
        """Release a held job (a Deferred of the job as JSON); see `_release`."""
        return Deferred.fromCoroutine(self._release(uuid, printer_id=printer_id, by=by))

    async def _release(self, uuid: str, *, printer_id: int | None = None, by: str = "") -> dict:
        """Release a held job; for a Find-Me job at `printer_id` (same page description language,
        same print server). The job prints (and is charged) when the provider reports it."""
        job = await self.store.get_job(uuid)
        if job.status is not JobStatus.HELD or uuid in self._releasing:
            raise Conflict(f"job {uuid} is {job.status.value}, not held")
        held_on = await self.jobs.directory.printer(job.printer_id)
        target = held_on
        if held_on.hold_mode is HoldMode.FIND_ME:
            if printer_id is None:
                raise InvalidInput("printer_id: a Find-Me job is released at a chosen printer")
            target = await self.jobs.directory.printer(printer_id)
            if target.hold_mode is HoldMode.FIND_ME:
                raise InvalidInput(f"printer_id: {target.name} is a Find-Me queue, not a printer")
            if target.server != held_on.server:
                raise InvalidInput(f"printer_id: {target.name} is on print server "
                                   f"{target.server!r}, the job on {held_on.server!r}")
            if not target.pdl or target.pdl.lower() != (held_on.pdl or "").lower():
                raise InvalidInput(f"printer_id: {target.name} speaks {target.pdl or 'an unknown language'}, "
                                   f"the job {held_on.pdl or 'an unknown language'}: pick a printer "
                                   "of the same page description language")
        elif printer_id is not None and printer_id != held_on.id:
            raise InvalidInput("printer_id: only Find-Me jobs may be released at another printer")
        # The rules of a live decision at the printer it will print on (InsufficientFunds,
        # JobDenied): the account may have been emptied, disabled or taken away meanwhile.
        await self.jobs.check_release(job, target)
        session = self._session(held_on.server)
        if session is None:
            raise ProviderOffline(f"print server {held_on.server!r} is not connected; "
                                  "release the job when it is back")
        fields = {"uuid": uuid}
        if target.id != held_on.id:
            fields.update(target_queue=target.queue, target_printer_id=target.id)
        where = f" at {target.name}" if target.id != held_on.id else ""
        # Released in the store before the provider acts: its job.printed may come at once.
        self._releasing.add(uuid)
        await self.store.update_job_status(uuid, JobStatus.RELEASED,
                                           reason=f"released{where}" + (f" by {by}" if by else ""))
        try:
            await session.request("job.release", **fields).addTimeout(PUSH_TIMEOUT, self.clock)
        except RemoteError as e:
            self._releasing.discard(uuid)
            if e.code == "not_found":
                await self.store.update_job_status(uuid, JobStatus.CANCELLED,
                                                   reason=f"gone from the print server: {e.message}")
                raise Conflict(f"job {uuid} is no longer on the print server: {e.message}") from None
            await self.store.update_job_status(uuid, JobStatus.HELD, reason=job.reason)
            raise
        except (LinkDown, defer.TimeoutError) as e:
            self._releasing.discard(uuid)
            await self.store.update_job_status(uuid, JobStatus.HELD, reason=job.reason)
            raise ProviderOffline(f"print server {held_on.server!r} did not answer: {e}") from None
        log.info("job {uuid} released{where}{by}", uuid=uuid, where=where,
                 by=f" by {by}" if by else "")
        current = await self.store.get_job(uuid)
        return held_job_json(current, target)

    def cancel(self, uuid: str, *, reason: str = "cancelled", status=JobStatus.CANCELLED) -> Deferred:
        """Cancel a held job (a Deferred of the job as JSON); see `_cancel`."""
        return Deferred.fromCoroutine(self._cancel(uuid, reason=reason, status=status))

    async def _cancel(self, uuid: str, *, reason: str = "cancelled", status=JobStatus.CANCELLED) -> dict:
        """Cancel a held job; the provider cancels the CUPS job (now, or when it reconnects)."""
        job = await self.store.get_job(uuid)
        if job.status not in (JobStatus.HELD, JobStatus.RELEASED):
            raise Conflict(f"job {uuid} is {job.status.value}, not held")
        stored, _ = await self.store.update_job_status(uuid, status, reason=reason)
        printer = await self.jobs.directory.printer(job.printer_id)
        session = self._session(printer.server)
        if session is not None:
            try:
                await session.request("job.cancel", uuid=uuid, reason=reason).addTimeout(
                    PUSH_TIMEOUT, self.clock)
            except Exception as e:
                # The provider asks about its held jobs when it reconnects (job.status).
                log.warn("provider {node!r} did not confirm cancelling {uuid}: {error}",
                         node=printer.server, uuid=uuid, error=str(e))
        return held_job_json(stored, printer)

    def expire_due(self) -> Deferred:
        """Expire overdue held jobs; a Deferred of how many."""
        return Deferred.fromCoroutine(self._expire_due())

    async def _expire_due(self) -> int:
        """Expire held jobs older than `hold_expiry` (their CUPS jobs are cancelled)."""
        cutoff = utcnow(self.clock) - self.hold_expiry
        expired = 0
        while True:
            jobs, _ = await self.store.list_jobs(0, 100, status=JobStatus.HELD, until=cutoff)
            jobs = [j for j in jobs if j.uuid not in self._releasing]
            if not jobs:
                return expired
            for job in jobs:
                try:
                    await self._cancel(job.uuid, reason="expired: not released in time",
                                      status=JobStatus.EXPIRED)
                    expired += 1
                except PcnetError as e:
                    log.warn("could not expire held job {uuid}: {error}", uuid=job.uuid, error=e.message)
                    return expired

    def expiry_service(self, interval: float = 60.0) -> TimerService:
        """A service that expires held jobs every `interval` seconds."""

        def run():
            return self.expire_due().addErrback(
                lambda f: log.failure("expiring held jobs failed", f))

        service = TimerService(interval, run)
        service.clock = self.clock
        return service


def _handler(method):
    def handle(session, msg):
        return Deferred.fromCoroutine(method(session, msg))
    return handle


# --- the store-backed node registry ----------------------------------------------------------------


@implementer(INodeRegistry)
class StoreNodeRegistry:
    """Node enrolment and approval kept in the store, with the rules of
    `pcnet.domain.enrolment.judge_hello` (applied by the store's `node_hello` in one
    transaction): a node's first hello must carry the enrolment code an administrator issued for
    its name (`invite`), unless it connects from an auto-approve network; the code pins the
    credential it presented and is spent; afterwards only that credential (and role) is accepted
    for that name. An unknown name without a valid code is rejected and recorded nowhere.

    `attach(factory)` lets `disconnect` reach the nodes' live sessions, so that deleting or
    rejecting a node (the admin API) also closes its connection.
    """

    def __init__(self, store, clock, *, auto_approve_networks=()):
        self.store = store
        self.clock = clock
        self._networks = [ipaddress.ip_network(n, strict=False) for n in auto_approve_networks]
        self._session_maps: list = []

    def check(self, role, node, credential, peer, enrolment_code=None):
        return Deferred.fromCoroutine(self._check(role, node, credential, peer, enrolment_code))

    def _auto(self, ip) -> bool:
        return ip is not None and any(ip.version == n.version and ip in n for n in self._networks)

    async def _check(self, role, node, credential, peer, enrolment_code) -> NodeStatus:
        ip = peer_ip(peer)
        verdict = await self.store.node_hello(
            role, node, credential_digest(credential).hex(), str(ip) if ip is not None else "",
            code_hash=None if enrolment_code is None else hash_token(enrolment_code),
            auto_approve=self._auto(ip))
        status = NodeStatus(verdict.status)
        if verdict.pin or verdict.approve or status is NodeStatus.REJECTED:
            # Enrolments and refusals are what an administrator looks for; plain reconnections
            # are logged by the line protocol already.
            emit = log.warn if status is NodeStatus.REJECTED else log.info
            emit("node {role} {node!r} at {address}: {reason}", role=role, node=node,
                 address=str(ip) if ip is not None else "?", reason=verdict.reason)
        return status

    # --- administration ---------------------------------------------------------------------

    async def invite(self, name: str, role: str, *, hours: float = DEFAULT_CODE_HOURS,
                     approve: bool | None = None):
        """Issue a one-time enrolment code for `name`: `(code, NodeInvitation)`. The code is
        returned only here (the store keeps its hash); an earlier invitation for the name is
        replaced."""
        code = new_enrolment_code()
        expires_at = utcnow(self.clock) + timedelta(hours=hours)
        invitation = await self.store.create_node_invitation(
            name, role, hash_token(code), expires_at,
            approve=approves_by_default(role) if approve is None else approve)
        log.info("invited {role} {node!r} to enrol (code valid until {until})", role=role,
                 node=name, until=expires_at.isoformat(timespec="seconds"))
        return code, invitation

    def attach(self, factory) -> None:
        """Reach the live sessions of this `LineServerFactory` (once per listener's factory)."""
        self._session_maps.append(factory.sessions)

    def disconnect(self, name: str, why: str) -> int:
        """Close every live session of the node `name`; how many there were."""
        closed = 0
        for sessions in self._session_maps:
            for (_, node), session in list(sessions.items()):
                if node == name:
                    session.abort(why)
                    closed += 1
        return closed

    async def set_status(self, name: str, status: NodeStatus):
        """Approve or reject a node (a rejected node's connection is closed); the Node."""
        record = await self.store.set_node_status(name, NodeStatus(status).value)
        if NodeStatus(status) is NodeStatus.REJECTED:
            self.disconnect(name, "rejected by an administrator")
        log.info("node {node!r} {status} by an administrator", node=name, status=str(status))
        return record

    async def delete(self, name: str) -> None:
        """Forget a node: its name is free for a new enrolment; its connection is closed."""
        await self.store.delete_node(name)
        self.disconnect(name, "deleted by an administrator")
        log.info("node {node!r} deleted by an administrator", node=name)


# --- wiring into the Application Server -------------------------------------------------------------
