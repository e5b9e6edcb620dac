"""The pcnet/1 messages between Print Providers and their server, declared once for both ends.

Each operation has a request type and a reply type. The sender builds the value and sends
`to_wire()`; the receiver reads it with `parse()` (a request arriving at a server: strict,
every field checked before anything is looked up or written, an `InvalidInput` naming the field
on the first problem, never `internal`) or `from_wire()` (a reply, or a push from the server:
missing optional fields take their defaults, so a server may add fields). Unknown fields are
ignored at both ends (docs/protocol.md), which is what lets either end grow.

    provider                                         server
    PrintersRegister  -> printers.register ->        PrintersRegister.parse
    PrintersRegistered.from_wire  <- reply <-        PrintersRegistered(...).to_wire()
    JobSubmit         -> job.submit ->               JobSubmit.parse
    JobDecision.from_wire <-                         JobDecision(...)
    JobPrinted        -> job.printed ->              JobPrinted.parse -> ChargeReply
    JobOffline        -> job.offline ->              JobOffline.parse -> ChargeReply
    JobStatusQuery    -> job.status ->               JobStatusQuery.parse -> JobStatusReply
    JournalQuarantined -> journal.quarantined ->     JournalQuarantined.parse -> QuarantineReply
    JobRelease.parse  <- job.release <-              JobRelease(...)   (pushed by the server)
    JobCancel.parse   <- job.cancel <-               JobCancel(...)
    JournalRetry.parse <- journal.retry <-           JournalRetry(...)

The limits of the fields are the rules of `pcnet.domain.rules` (the same the service layer
applies to every way in).
"""

from __future__ import annotations

import json
import math
import re
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from pcnet.domain import rules as R
from pcnet.domain.model import (
    MAX_COUNT,
    FailureMode,
    HoldMode,
    JobLimits,
    JobRequest,
)
from pcnet.errors import InvalidInput
from pcnet.money import format_money

#: How far past the server's clock a provider's timestamp may be (clock skew between hosts);
#: anything later is not a time at which a job printed.
MAX_CLOCK_AHEAD = 86_400.0
#: The most a quarantined entry's record may hold, as JSON (an entry is one job's fields).
MAX_QUARANTINED_RECORD = 64 * 1024
MAX_QUARANTINE_MESSAGE = 2000
MAX_RETRY_KEYS = 1000
_ENTRY_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

_UUID = R.Text(min_length=1, max_length=64, strip_check=False, controls=True)
_CODE = R.Text(min_length=1, max_length=64, strip_check=False, controls=True)
_KIND = R.Text(min_length=1, max_length=64, strip_check=False, controls=True)
_STATE = R.Text(max_length=32, strip_check=False, controls=True)
_MESSAGE = R.Text(max_length=MAX_QUARANTINE_MESSAGE, strip_check=False, controls=True)
_ID = R.Count(1, MAX_COUNT)


# --- reading fields ----------------------------------------------------------------------------

def text(msg: dict, key: str, rule: R.Text, *, required: bool = True, default: str = "") -> str:
    """A text field by `rule`; an absent (or null, or empty) optional field is `default`."""
    value = msg.get(key)
    if value is None or value == "":
        if required:
            raise R.invalid(key, "required")
        return default
    if not isinstance(value, str):
        raise R.invalid(key, f"expected a string of at most {rule.max_length} characters")
    return rule.check(value, key)


def count(msg: dict, key: str, rule: R.Count, *, default: int | None = None) -> int:
    value = msg.get(key, default)
    if type(value) is not int or not rule.minimum <= value <= rule.maximum:
        raise R.invalid(key, f"expected a whole number from {rule.minimum} to {rule.maximum}")
    return value


def optional_id(msg: dict, key: str) -> int | None:
    """An optional record id: a positive integer the store can hold."""
    return None if msg.get(key) is None else count(msg, key, _ID)


def flag(msg: dict, key: str, default: bool = False) -> bool:
    value = msg.get(key, default)
    if type(value) is not bool:
        raise R.invalid(key, "expected true or false")
    return value


def uuid_field(msg: dict, key: str = "uuid") -> str:
    value = text(msg, key, _UUID)
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise R.invalid(key, f"{value!r} is not a UUID") from None


def timestamp(msg: dict, key: str, now: float) -> datetime | None:
    """An optional time in seconds since the epoch: after the epoch and not in the future
    (beyond `MAX_CLOCK_AHEAD` of clock skew)."""
    value = msg.get(key)
    if value is None:
        return None
    if (type(value) not in (int, float) or not math.isfinite(value) or value <= 0
            or value > now + MAX_CLOCK_AHEAD):
        raise R.invalid(key, "expected seconds since the epoch, not later than the server's "
                             "clock (give or take a day)")
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _nested(prefix: str, error: InvalidInput) -> InvalidInput:
    """An error about a field of a nested object, named by its path."""
    return InvalidInput(f"{prefix}.{error.message}", field=f"{prefix}.{error.field}")


# --- printers.register -----------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueInfo:
    """A CUPS queue a provider manages."""

    queue: str
    location: str = ""
    info: str = ""
    make_and_model: str = ""


@dataclass(frozen=True)
class PrintersRegister:
    OP = "printers.register"
    MAX = 10_000

    printers: tuple[QueueInfo, ...]

    def to_wire(self) -> dict:
        return {"printers": [asdict(q) for q in self.printers]}

    @classmethod
    def parse(cls, msg: dict) -> PrintersRegister:
        given = msg.get("printers")
        if not isinstance(given, list) or len(given) > cls.MAX:
            raise R.invalid("printers", f"expected a list of at most {cls.MAX}")
        queues = []
        for i, item in enumerate(given):
            if not isinstance(item, dict):
                raise R.invalid(f"printers[{i}]", "expected an object")
            try:
                queues.append(QueueInfo(text(item, "queue", R.QUEUE),
                                        text(item, "location", R.QUEUE_LOCATION, required=False)))
            except InvalidInput as e:
                raise _nested(f"printers[{i}]", e) from None
        return cls(tuple(queues))


@dataclass(frozen=True)
class PrinterInfo:
    """What a provider learns about one of its printers; `limits` (the server's job limits)
    let it refuse an over-limit job while no server answers."""

    queue: str
    id: int
    name: str
    hold_mode: HoldMode = HoldMode.NONE
    failure_mode: FailureMode | None = None   # None: the provider's default failure mode
    pdl: str = ""
    disabled: bool = False
    limits: JobLimits | None = None

    @classmethod
    def of(cls, printer, limits: JobLimits) -> PrinterInfo:
        return cls(queue=printer.queue, id=printer.id, name=printer.name,
                   hold_mode=printer.hold_mode, failure_mode=printer.failure_mode,
                   pdl=printer.pdl, disabled=printer.disabled, limits=limits)

    def to_wire(self) -> dict:
        out = {"queue": self.queue, "id": self.id, "name": self.name,
               "hold_mode": HoldMode(self.hold_mode).value, "pdl": self.pdl,
               "disabled": self.disabled}
        if self.failure_mode is not None:
            out["failure_mode"] = FailureMode(self.failure_mode).value
        if self.limits is not None:
            out["limits"] = self.limits.to_json()
        return out

    @classmethod
    def from_wire(cls, p: dict) -> PrinterInfo:
        """From a server's reply; unknown modes and malformed limits fall back to defaults
        (an older or newer server)."""
        try:
            hold = HoldMode(p.get("hold_mode", HoldMode.NONE.value))
        except ValueError:
            hold = HoldMode.NONE
        try:
            failure = FailureMode(p["failure_mode"]) if "failure_mode" in p else None
        except ValueError:
            failure = None
        limits = None
        if isinstance(p.get("limits"), dict):
            try:
                limits = JobLimits(**{k: p["limits"][k] for k in
                                      ("max_copies", "max_pages", "max_total_pages")
                                      if k in p["limits"]})
            except (TypeError, ValueError):
                limits = None
        return cls(queue=p["queue"], id=p["id"], name=p.get("name", p["queue"]), hold_mode=hold,
                   failure_mode=failure, pdl=p.get("pdl", ""),
                   disabled=bool(p.get("disabled", False)), limits=limits)


@dataclass(frozen=True)
class PrintersRegistered:
    printers: tuple[PrinterInfo, ...]

    def to_wire(self) -> dict:
        return {"printers": [p.to_wire() for p in self.printers]}

    @classmethod
    def from_wire(cls, reply: dict) -> PrintersRegistered:
        return cls(tuple(PrinterInfo.from_wire(p) for p in reply.get("printers", [])))


# --- job.submit and job.offline -----------------------------------------------------------------

@dataclass(frozen=True)
class JobSubmit:
    """A job as a provider analysed it: the printer by `printer_id` (or `queue` on the
    calling provider), the counts, and `uuid`, its identity (a repeat is decided once).
    `cups_job_id` and `analysis_fallback` are for the provider's own records."""

    OP = "job.submit"

    uuid: str
    user: str
    pages: int
    queue: str = ""
    printer_id: int | None = None
    colour_pages: int = 0
    duplex: bool = False
    copies: int = 1
    paper_size: str = ""
    document_name: str = ""
    account_id: int | None = None
    cups_job_id: int | None = None
    analysis_fallback: bool = False

    def to_wire(self) -> dict:
        out = asdict(self)
        for key in ("printer_id", "account_id", "cups_job_id"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def parse(cls, msg: dict) -> JobSubmit:
        printer_id = optional_id(msg, "printer_id")
        return cls(
            uuid=uuid_field(msg),
            user=text(msg, "user", R.JOB_USERNAME),
            pages=count(msg, "pages", R.JOB_PAGES),
            queue=text(msg, "queue", R.QUEUE, required=printer_id is None),
            printer_id=printer_id,
            colour_pages=count(msg, "colour_pages", R.JOB_PAGES, default=0),
            duplex=flag(msg, "duplex"),
            copies=count(msg, "copies", R.JOB_COPIES, default=1),
            paper_size=text(msg, "paper_size", R.PAPER_SIZE, required=False),
            document_name=text(msg, "document_name", R.DOCUMENT_NAME, required=False),
            account_id=optional_id(msg, "account_id"),
        )

    def request(self, printer_id: int, client: str) -> JobRequest:
        """The job as the job service takes it, on the printer found for it."""
        return JobRequest(username=self.user, printer_id=printer_id, pages=self.pages,
                          colour_pages=self.colour_pages, duplex=self.duplex, copies=self.copies,
                          paper_size=self.paper_size, document_name=self.document_name,
                          account_id=self.account_id, client=client, uuid=self.uuid)


@dataclass(frozen=True)
class JobOffline:
    """A job the provider printed while no server answered (`job.submit`'s fields and when
    it printed), replayed from its journal."""

    OP = "job.offline"

    job: JobSubmit
    printed_at: datetime | None = None

    @classmethod
    def parse(cls, msg: dict, now: float) -> JobOffline:
        printed_at = timestamp(msg, "printed_at", now)
        return cls(JobSubmit.parse(msg), printed_at)


@dataclass(frozen=True)
class JobDecision:
    """The server's answer to `job.submit`: print, deny or hold, at what cost, and the
    printer as it is now (the provider refreshes its cached modes from it)."""

    action: str
    cost: Decimal
    reason: str = ""
    account_id: int | None = None
    uuid: str = ""
    status: str = ""
    printer: PrinterInfo | None = None

    @classmethod
    def of(cls, decision, record, printer: PrinterInfo | None) -> JobDecision:
        return cls(action=decision.action.value, cost=decision.cost, reason=decision.reason,
                   account_id=decision.account_id, uuid=record.uuid, status=record.status.value,
                   printer=printer)

    def to_wire(self) -> dict:
        out = {"action": self.action, "cost": format_money(self.cost), "reason": self.reason,
               "account_id": self.account_id, "uuid": self.uuid, "status": self.status}
        if self.printer is not None:
            out["printer"] = self.printer.to_wire()
        return out

    @classmethod
    def from_wire(cls, reply: dict) -> JobDecision:
        info = reply.get("printer")
        printer = None
        if isinstance(info, dict) and "queue" in info and "id" in info:
            printer = PrinterInfo.from_wire(info)
        try:
            cost = Decimal(str(reply.get("cost") or "0"))
        except ArithmeticError:
            cost = Decimal(0)
        return cls(action=str(reply.get("action") or ""), cost=cost,
                   reason=str(reply.get("reason") or ""), account_id=reply.get("account_id"),
                   uuid=str(reply.get("uuid") or ""), status=str(reply.get("status") or ""),
                   printer=printer)


@dataclass(frozen=True)
class ChargeReply:
    """The answer to `job.printed` and `job.offline`: where the job stands, what it cost and
    whether it was charged now; `problem` (job.offline) why an administrator should look."""

    status: str
    cost: Decimal
    charged: bool
    problem: str | None = None

    def to_wire(self) -> dict:
        out = {"status": self.status, "cost": format_money(self.cost), "charged": self.charged}
        if self.problem is not None:
            out["problem"] = self.problem
        return out


# --- held jobs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobPrinted:
    """A released held job printed; `printer_id` is the Find-Me target it printed on."""

    OP = "job.printed"

    uuid: str
    printer_id: int | None = None

    def to_wire(self) -> dict:
        return {"uuid": self.uuid} | ({} if self.printer_id is None else {"printer_id": self.printer_id})

    @classmethod
    def parse(cls, msg: dict) -> JobPrinted:
        return cls(uuid_field(msg), optional_id(msg, "printer_id"))


@dataclass(frozen=True)
class JobStatusQuery:
    OP = "job.status"

    uuid: str

    def to_wire(self) -> dict:
        return {"uuid": self.uuid}

    @classmethod
    def parse(cls, msg: dict) -> JobStatusQuery:
        return cls(uuid_field(msg))


@dataclass(frozen=True)
class JobStatusReply:
    status: str
    target_queue: str | None = None
    target_printer_id: int | None = None

    def to_wire(self) -> dict:
        out = {"status": self.status}
        if self.target_queue is not None:
            out.update(target_queue=self.target_queue, target_printer_id=self.target_printer_id)
        return out

    @classmethod
    def from_wire(cls, reply: dict) -> JobStatusReply:
        return cls(str(reply.get("status") or ""), reply.get("target_queue") or None,
                   reply.get("target_printer_id"))


@dataclass(frozen=True)
class JobRelease:
    """Pushed by the server: print a held job (a Find-Me job on `target_queue`)."""

    OP = "job.release"

    uuid: str
    target_queue: str | None = None
    target_printer_id: int | None = None

    def to_wire(self) -> dict:
        out = {"uuid": self.uuid}
        if self.target_queue is not None:
            out.update(target_queue=self.target_queue, target_printer_id=self.target_printer_id)
        return out

    @classmethod
    def parse(cls, msg: dict) -> JobRelease:
        return cls(uuid=text(msg, "uuid", _UUID),
                   target_queue=text(msg, "target_queue", R.QUEUE, required=False) or None,
                   target_printer_id=optional_id(msg, "target_printer_id"))


@dataclass(frozen=True)
class JobCancel:
    """Pushed by the server: cancel a held job, for `reason`."""

    OP = "job.cancel"

    uuid: str
    reason: str = "cancelled"

    def to_wire(self) -> dict:
        return {"uuid": self.uuid, "reason": self.reason}

    @classmethod
    def parse(cls, msg: dict) -> JobCancel:
        return cls(uuid=text(msg, "uuid", _UUID),
                   reason=text(msg, "reason", R.Text(max_length=1000, strip_check=False,
                                                     controls=True),
                               required=False, default="cancelled"))


# --- the journal quarantine ------------------------------------------------------------------------

@dataclass(frozen=True)
class JournalQuarantined:
    """A provider's report of a journal entry it set aside (`state` quarantined, with the
    error it got) or replayed at last after a retry (`resolved`)."""

    OP = "journal.quarantined"
    STATES = ("quarantined", "resolved")

    key: str
    kind: str
    error_code: str
    error_message: str
    record: dict
    state: str = "quarantined"
    uuid: str = ""
    quarantined_at: float | datetime | None = None

    def to_wire(self) -> dict:
        out = {"key": self.key, "kind": self.kind,
               "error": {"code": self.error_code, "message": self.error_message},
               "record": self.record, "state": self.state}
        if self.uuid:
            out["uuid"] = self.uuid
        if isinstance(self.quarantined_at, (int, float)):
            out["quarantined_at"] = self.quarantined_at
        return out

    @classmethod
    def parse(cls, msg: dict, now: float) -> JournalQuarantined:
        key = text(msg, "key", R.Text(min_length=1, max_length=128, strip_check=False,
                                      controls=True))
        if not _ENTRY_KEY.match(key):
            raise R.invalid("key", "expected letters, digits, '.', '_' or '-'")
        kind = text(msg, "kind", _KIND)
        job_uuid = uuid_field(msg) if msg.get("uuid") not in (None, "") else ""
        error = msg.get("error")
        if not isinstance(error, dict):
            raise R.invalid("error", "expected an object with code and message")
        try:
            error_code = text(error, "code", _CODE)
            error_message = text(error, "message", _MESSAGE, required=False)
        except InvalidInput as e:
            raise _nested("error", e) from None
        record = msg.get("record")
        if not isinstance(record, dict):
            raise R.invalid("record", "expected an object (the entry's fields)")
        # Stored as ASCII JSON text: NULs and lone surrogates in it are escaped, not refused.
        if len(json.dumps(record)) > MAX_QUARANTINED_RECORD:
            raise R.invalid("record", f"more than {MAX_QUARANTINED_RECORD} bytes as JSON")
        state = text(msg, "state", _STATE, required=False, default="quarantined")
        if state not in cls.STATES:
            raise R.invalid("state", "expected quarantined or resolved")
        return cls(key=key, kind=kind, error_code=error_code, error_message=error_message,
                   record=record, state=state, uuid=job_uuid,
                   quarantined_at=timestamp(msg, "quarantined_at", now))


@dataclass(frozen=True)
class JournalRetry:
    """Pushed by the server: put these quarantined entries back into the journal."""

    OP = "journal.retry"

    keys: tuple[str, ...] = field(default_factory=tuple)

    def to_wire(self) -> dict:
        return {"keys": list(self.keys)}

    @classmethod
    def parse(cls, msg: dict) -> JournalRetry:
        keys = msg.get("keys")
        if (not isinstance(keys, list) or len(keys) > MAX_RETRY_KEYS
                or not all(isinstance(k, str) for k in keys)):
            raise R.invalid("keys", "expected a list of journal entry keys")
        return cls(tuple(keys))
