"""Between Python values and column values: money, times, JSON, and rows into records.

Money is stored as integer minor units (1/10,000) and times as integer microseconds since the
Unix epoch, UTC, so both round-trip exactly on both engines (no floats, no time zones in SQL).
Rows come back as plain tuples in the column order of the `*_COLUMNS` strings below.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pcnet.domain.model import (
    Account,
    AccountKind,
    ApiToken,
    CostModel,
    FailureMode,
    Filters,
    Group,
    HoldMode,
    AuditEntry,
    JobRecord,
    JobStatus,
    OfflineAccountSelection,
    Printer,
    Quota,
    QuotaPeriod,
    SiteOfflinePolicy,
    Transaction,
    TransactionKind,
    UnknownUsers,
    User,
)
from pcnet.domain.enrolment import NodeInvitation
from pcnet.errors import InvalidInput
from pcnet.money import from_minor, to_minor
from pcnet.store._records import Node, PrinterName, QuarantinedEntry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# --- scalars -----------------------------------------------------------------------------

def micros(dt: datetime | None) -> int | None:
    """Aware datetime -> integer microseconds since the epoch (exact, no float on the way)."""
    if dt is None:
        return None
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        raise InvalidInput(f"time {dt.isoformat()} has no time zone; pcnet keeps times in UTC")
    return (dt - EPOCH) // _MICROSECOND


def from_micros(us: int | None) -> datetime | None:
    if us is None:
        return None
    return EPOCH + timedelta(microseconds=int(us))


def seconds_to_micros(seconds: float) -> int:
    """A reactor clock reading (float seconds) -> microseconds."""
    return int(round(seconds * 1_000_000))


def minor(amount) -> int | None:
    """Decimal (or int) currency amount -> integer minor units. Floats are refused."""
    if amount is None:
        return None
    if isinstance(amount, float) or isinstance(amount, bool):
        raise InvalidInput("money must be a Decimal, not a float")
    return to_minor(Decimal(amount))


def money(units: int | None) -> Decimal | None:
    return None if units is None else from_minor(units)


def enum_value(value) -> str:
    return value.value if hasattr(value, "value") else str(value)


# --- JSON columns (Decimal as strings) ---------------------------------------------------

def cost_model_json(cm: CostModel | None) -> str:
    cm = cm if cm is not None else CostModel()
    return json.dumps({
        "grey": str(cm.grey),
        "colour": str(cm.colour),
        "duplex_discount": str(cm.duplex_discount),
        "sizes": {name: [str(grey), str(colour)] for name, (grey, colour) in sorted(cm.sizes.items())},
    }, sort_keys=True)


def cost_model_from_json(text: str) -> CostModel:
    d = json.loads(text)
    return CostModel(
        grey=Decimal(d["grey"]),
        colour=Decimal(d["colour"]),
        duplex_discount=Decimal(d.get("duplex_discount", "0")),
        sizes={name: (Decimal(g), Decimal(c)) for name, (g, c) in d.get("sizes", {}).items()},
    )


def filters_json(f: Filters | None) -> str:
    f = f if f is not None else Filters()
    return json.dumps({
        "max_pages": f.max_pages,
        "max_copies": f.max_copies,
        "max_cost": None if f.max_cost is None else str(f.max_cost),
        "grey_only": f.grey_only,
        "duplex_only": f.duplex_only,
        "deny_document_patterns": list(f.deny_document_patterns),
        "duplicate_window_seconds": f.duplicate_window_seconds,
    }, sort_keys=True)


def filters_from_json(text: str) -> Filters:
    d = json.loads(text)
    # Keys this version does not know are ignored, so an older server can read a newer row.
    return Filters(
        max_pages=d.get("max_pages"),
        max_copies=d.get("max_copies"),
        max_cost=None if d.get("max_cost") is None else Decimal(d["max_cost"]),
        grey_only=bool(d.get("grey_only", False)),
        duplex_only=bool(d.get("duplex_only", False)),
        deny_document_patterns=tuple(d.get("deny_document_patterns", ())),
        duplicate_window_seconds=d.get("duplicate_window_seconds"),
    )


# --- rows -> records ------------------------------------------------------------------------

USER_COLUMNS = ("u.id, u.username, u.full_name, u.email, u.department, u.office, u.password_hash,"
                " u.pin_hash, u.disabled, u.admin, a.id, u.created_at")
USER_FROM = "users u LEFT JOIN accounts a ON a.owner_user_id = u.id"


def user_from_row(row, cards=()) -> User:
    return User(
        id=row[0], username=row[1], full_name=row[2], email=row[3], department=row[4],
        office=row[5], card_numbers=tuple(cards), password_hash=row[6], pin_hash=row[7],
        disabled=bool(row[8]), admin=bool(row[9]), personal_account_id=row[10],
        created_at=from_micros(row[11]),
    )


GROUP_COLUMNS = "id, name, description"


def group_from_row(row) -> Group:
    return Group(id=row[0], name=row[1], description=row[2])


ACCOUNT_COLUMNS = ("id, name, kind, balance, restricted, overdraft, owner_user_id, parent_id,"
                   " pin_hash, disabled, comment")


def account_from_row(row) -> Account:
    return Account(
        id=row[0], name=row[1], kind=AccountKind(row[2]), balance=from_minor(row[3]),
        restricted=bool(row[4]), overdraft=from_minor(row[5]), owner_user_id=row[6],
        parent_id=row[7], pin_hash=row[8], disabled=bool(row[9]), comment=row[10],
    )


TRANSACTION_COLUMNS = ("id, uuid, account_id, amount, balance_after, kind, reference, comment,"
                       " origin, created_at")


def transaction_from_row(row) -> Transaction:
    return Transaction(
        id=row[0], uuid=row[1], account_id=row[2], amount=from_minor(row[3]),
        balance_after=from_minor(row[4]), kind=TransactionKind(row[5]), reference=row[6],
        comment=row[7], origin=row[8], created_at=from_micros(row[9]),
    )


PRINTER_COLUMNS = ("id, name, server, queue, location, cost_model, filters, hold_mode,"
                   " failure_mode, pdl, disabled")


def printer_from_row(row) -> Printer:
    return Printer(
        id=row[0], name=row[1], server=row[2], queue=row[3], location=row[4],
        cost_model=cost_model_from_json(row[5]), filters=filters_from_json(row[6]),
        hold_mode=HoldMode(row[7]), failure_mode=FailureMode(row[8]), pdl=row[9],
        disabled=bool(row[10]),
    )


# The job log row as inserted, in this order (id excluded); JOB_COLUMNS adds id first.
JOB_INSERT_COLUMNS = ("uuid, user_id, username, printer_id, account_id, pages, colour_pages,"
                      " duplex, copies, paper_size, document_name, cost, status, reason, client,"
                      " origin, created_at, problem")
# Read back with who released or cancelled the job and the printer's current name (a job read
# from what was just inserted has neither yet: `job_from_row` takes the shorter row too).
JOB_COLUMNS = ("id, " + JOB_INSERT_COLUMNS + ", released_by, cancelled_by,"
               " (SELECT p.name FROM printers p WHERE p.id = jobs.printer_id)")


def job_params(job: JobRecord, now_us: int) -> tuple:
    """A JobRecord as the column values of JOB_INSERT_COLUMNS."""
    return (
        job.uuid, job.user_id, job.username, job.printer_id, job.account_id, int(job.pages),
        int(job.colour_pages), bool(job.duplex), int(job.copies), job.paper_size,
        job.document_name, minor(job.cost), enum_value(job.status), job.reason, job.client,
        job.origin, micros(job.created_at) if job.created_at is not None else now_us,
        job.problem,
    )


def job_from_row(row) -> JobRecord:
    return JobRecord(
        id=row[0], uuid=row[1], user_id=row[2], username=row[3], printer_id=row[4],
        account_id=row[5], pages=row[6], colour_pages=row[7], duplex=bool(row[8]),
        copies=row[9], paper_size=row[10], document_name=row[11], cost=from_minor(row[12]),
        status=JobStatus(row[13]), reason=row[14], client=row[15], origin=row[16],
        created_at=from_micros(row[17]), problem=row[18],
        released_by=row[19] if len(row) > 19 else "",
        cancelled_by=row[20] if len(row) > 20 else "",
        printer_name=(row[21] or "") if len(row) > 21 else "",
    )


def entry_params(entry, now_us: int) -> tuple:
    """A LedgerEntry as (uuid, account_id, amount, kind, reference, comment, origin, created_at)."""
    return (
        entry.uuid, entry.account_id, minor(entry.amount), enum_value(entry.kind),
        entry.reference, entry.comment, entry.origin,
        micros(entry.created_at) if entry.created_at is not None else now_us,
    )


QUOTA_COLUMNS = "id, group_id, amount, period, cap, next_due_at, last_applied_at"


def quota_from_row(row) -> Quota:
    return Quota(
        id=row[0], group_id=row[1], amount=from_minor(row[2]), period=QuotaPeriod(row[3]),
        cap=money(row[4]), next_due_at=from_micros(row[5]), last_applied_at=from_micros(row[6]),
    )


TOKEN_COLUMNS = "id, name, user_id, created_at, last_used_at"


def token_from_row(row) -> ApiToken:
    return ApiToken(id=row[0], name=row[1], user_id=row[2], created_at=from_micros(row[3]),
                    last_used_at=from_micros(row[4]))


NODE_COLUMNS = "name, role, status, address, created_at, approved_at, credential_hash"


def node_from_row(row) -> Node:
    return Node(name=row[0], role=row[1], status=row[2], address=row[3],
                created_at=from_micros(row[4]), approved_at=from_micros(row[5]),
                credential_hash=row[6])


INVITATION_COLUMNS = "name, role, approve, expires_at, created_at, code_hash"


def invitation_from_row(row) -> NodeInvitation:
    return NodeInvitation(name=row[0], role=row[1], approve=bool(row[2]),
                          expires_at=from_micros(row[3]), created_at=from_micros(row[4]),
                          code_hash=row[5])
QUARANTINE_COLUMNS = ("id, node, entry_key, kind, job_uuid, error_code, error_message, record,"
                      " state, quarantined_at, reported_at, updated_at")


def quarantined_from_row(row) -> QuarantinedEntry:
    return QuarantinedEntry(
        id=row[0], node=row[1], key=row[2], kind=row[3], job_uuid=row[4], error_code=row[5],
        error_message=row[6], record=json.loads(row[7]), state=row[8],
        quarantined_at=from_micros(row[9]), reported_at=from_micros(row[10]),
        updated_at=from_micros(row[11]))


def printer_name_from_row(row) -> PrinterName:
    return PrinterName(name=row[0], since=from_micros(row[1]), until=from_micros(row[2]))


OFFLINE_POLICY_COLUMNS = ("account_selection, offline_account_id, restricted_credit, unknown_users,"
                          " unknown_user_id, password_auth_offline, updated_at")


def offline_policy_from_row(row) -> SiteOfflinePolicy:
    return SiteOfflinePolicy(
        account_selection=OfflineAccountSelection(row[0]), offline_account_id=row[1],
        restricted_credit=from_minor(row[2]), unknown_users=UnknownUsers(row[3]),
        unknown_user_id=row[4], password_auth_offline=bool(row[5]),
        updated_at=from_micros(row[6]))


def offline_policy_params(policy: SiteOfflinePolicy) -> tuple:
    """A SiteOfflinePolicy as the column values of OFFLINE_POLICY_COLUMNS but updated_at."""
    return (enum_value(policy.account_selection), policy.offline_account_id,
            minor(policy.restricted_credit), enum_value(policy.unknown_users),
            policy.unknown_user_id, bool(policy.password_auth_offline))


AUDIT_COLUMNS = ("id, at, actor, actor_name, address, detail, action, object_kind, object_id,"
                 " object_name, before, after")


def audit_params(entry: AuditEntry) -> tuple:
    """An AuditEntry as the column values of AUDIT_COLUMNS but id and at."""
    def dumps(values):
        return None if values is None else json.dumps(values, sort_keys=True, default=str)

    return (entry.actor, entry.actor_name, entry.address, entry.detail, entry.action,
            entry.object_kind, str(entry.object_id if entry.object_id is not None else ""),
            entry.object_name or "", dumps(entry.before), dumps(entry.after))


def audit_from_row(row) -> AuditEntry:
    return AuditEntry(
        id=row[0], at=from_micros(row[1]), actor=row[2], actor_name=row[3], address=row[4],
        detail=row[5], action=row[6], object_kind=row[7], object_id=row[8], object_name=row[9],
        before=None if row[10] is None else json.loads(row[10]),
        after=None if row[11] is None else json.loads(row[11]))
