"""How the admin API shows domain records as JSON, and the JSON Schemas of those shapes.

Each serialiser sits next to the schema that documents it; the tests validate every reply the
suite receives against the schema its route declares, so the two cannot drift apart. Money is a
string with 4 decimal places, times are ISO-8601 UTC ending in `Z`, enums are their values, and
no secret hash ever leaves here (only `has_password`/`has_pin`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from pcnet.domain.model import (
    Account,
    AuditEntry,
    AccountKind,
    ApiToken,
    CostModel,
    Decision,
    FailureMode,
    Filters,
    Group,
    HoldMode,
    JobAction,
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
from pcnet.money import format_money
from pcnet.store import QUARANTINE_STATES


def iso(moment: datetime | None) -> str | None:
    """An aware datetime -> `2025-01-31T08:00:00Z` (microseconds shown when not zero)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else format_money(Decimal(amount))


# --- schema building blocks -----------------------------------------------------------------

def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict) -> dict:
    if "$ref" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    t = schema["type"]
    return {**schema, "type": [t, "null"]}


MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{4}$", "examples": ["1.5000"]}
TIME = {"type": "string", "format": "date-time", "pattern": r"Z$"}
INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def _enum(enum_type) -> dict:
    return {"type": "string", "enum": [m.value for m in enum_type]}


def _obj(properties: dict, description: str = "") -> dict:
    out = {"type": "object", "properties": properties, "required": list(properties),
           "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def page_of(item_schema_name: str) -> dict:
    return _obj({"items": {"type": "array", "items": ref(item_schema_name)},
                 "total": INT, "offset": INT, "limit": INT},
                f"one page of {item_schema_name} records")


#: Component schemas, by name, for `#/components/schemas/...`.
SCHEMAS: dict[str, dict] = {}


def _schema(name: str, schema: dict) -> dict:
    SCHEMAS[name] = schema
    return ref(name)


ERROR = _schema("Error", {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"], "additionalProperties": False,
        "properties": {
            "code": {**STR, "description": "stable machine-readable code, e.g. invalid, not_found"},
            "message": {**STR, "description": "for people; names the field at fault"},
            "field": {**STR, "description": "the field at fault, when there is one"},
        }}},
})

# --- users and groups -----------------------------------------------------------------------

USER = _schema("User", _obj({
    "id": INT, "username": STR, "full_name": STR, "email": STR, "department": STR, "office": STR,
    "card_numbers": {"type": "array", "items": STR},
    "has_password": BOOL, "has_pin": BOOL, "disabled": BOOL, "admin": BOOL,
    "personal_account_id": _nullable(INT), "created_at": _nullable(TIME),
}, "a user; passwords and PINs are never shown, only whether they are set"))


def user_json(user: User) -> dict:
    out = user.public()
    out["card_numbers"] = list(out["card_numbers"])
    out["created_at"] = iso(user.created_at)
    return out


ME = _schema("Me", _obj({
    "user": ref("User"),
    "balance": {**_nullable(MONEY), "description": "of the personal account; null without one"},
}, "the signed-in user and the balance of their personal account"))


def me_json(user: User, account: Account | None) -> dict:
    return {"user": user_json(user), "balance": money(account.balance) if account is not None else None}


GROUP = _schema("Group", _obj({"id": INT, "name": STR, "description": STR}))


def group_json(group: Group) -> dict:
    return {"id": group.id, "name": group.name, "description": group.description}


# --- accounts and ledger ----------------------------------------------------------------------

ACCOUNT = _schema("Account", _obj({
    "id": INT, "name": STR, "kind": _enum(AccountKind), "balance": MONEY,
    "restricted": BOOL, "overdraft": MONEY, "owner_user_id": _nullable(INT),
    "parent_id": _nullable(INT), "has_pin": BOOL, "disabled": BOOL, "comment": STR,
}, "a personal or shared account with its current balance"))


def account_json(account: Account) -> dict:
    return {
        "id": account.id, "name": account.name, "kind": AccountKind(account.kind).value,
        "balance": money(account.balance), "restricted": account.restricted,
        "overdraft": money(account.overdraft), "owner_user_id": account.owner_user_id,
        "parent_id": account.parent_id, "has_pin": account.pin_hash is not None,
        "disabled": account.disabled, "comment": account.comment,
    }


ACCESS = _schema("AccountAccess", _obj({
    "users": {"type": "array", "items": INT}, "groups": {"type": "array", "items": INT},
}, "the users and groups (by id) allowed to charge a shared account"))


def access_json(access: dict) -> dict:
    return {"users": sorted(access.get("users", ())), "groups": sorted(access.get("groups", ()))}


TRANSACTION = _schema("Transaction", _obj({
    "id": INT, "uuid": STR, "account_id": INT, "amount": MONEY, "balance_after": MONEY,
    "kind": _enum(TransactionKind), "reference": STR, "comment": STR, "origin": STR,
    "created_at": TIME,
}, "one ledger row: a balance change and the balance it left"))


def transaction_json(txn: Transaction) -> dict:
    return {
        "id": txn.id, "uuid": txn.uuid, "account_id": txn.account_id, "amount": money(txn.amount),
        "balance_after": money(txn.balance_after), "kind": TransactionKind(txn.kind).value,
        "reference": txn.reference, "comment": txn.comment, "origin": txn.origin,
        "created_at": iso(txn.created_at),
    }


BALANCE_CHANGE = _schema("BalanceChange", _obj({
    "transaction": ref("Transaction"), "account": ref("Account"),
}, "the ledger row of an adjustment and the account after it"))

# --- printers -----------------------------------------------------------------------------------

COST_MODEL = _schema("CostModel", _obj({
    "grey": MONEY, "colour": MONEY, "duplex_discount": MONEY,
    "sizes": {"type": "object", "additionalProperties": _obj({"grey": MONEY, "colour": MONEY})},
}, "price of one printed side; `sizes` overrides the prices per paper size"))


def cost_model_json(model: CostModel) -> dict:
    return {
        "grey": money(model.grey), "colour": money(model.colour),
        "duplex_discount": money(model.duplex_discount),
        "sizes": {name: {"grey": money(g), "colour": money(c)} for name, (g, c) in model.sizes.items()},
    }


FILTERS = _schema("Filters", _obj({
    "max_pages": _nullable(INT), "max_copies": _nullable(INT), "max_cost": _nullable(MONEY),
    "grey_only": BOOL, "duplex_only": BOOL,
    "deny_document_patterns": {"type": "array", "items": STR},
    "duplicate_window_seconds": _nullable(INT),
}, "rules a job must pass on this printer; null or empty means the rule is off"))


def filters_json(f: Filters) -> dict:
    return {
        "max_pages": f.max_pages, "max_copies": f.max_copies, "max_cost": money(f.max_cost),
        "grey_only": f.grey_only, "duplex_only": f.duplex_only,
        "deny_document_patterns": list(f.deny_document_patterns),
        "duplicate_window_seconds": f.duplicate_window_seconds,
    }


PRINTER = _schema("Printer", _obj({
    "id": INT, "name": STR, "server": STR, "queue": STR, "location": STR,
    "cost_model": ref("CostModel"), "filters": ref("Filters"),
    "hold_mode": _enum(HoldMode), "failure_mode": _enum(FailureMode), "pdl": STR, "disabled": BOOL,
}))


def printer_json(p: Printer) -> dict:
    return {
        "id": p.id, "name": p.name, "server": p.server, "queue": p.queue, "location": p.location,
        "cost_model": cost_model_json(p.cost_model), "filters": filters_json(p.filters),
        "hold_mode": HoldMode(p.hold_mode).value, "failure_mode": FailureMode(p.failure_mode).value,
        "pdl": p.pdl, "disabled": p.disabled,
    }


PRINTER_NAMES = _schema("PrinterNames", _obj({"items": {"type": "array", "items": _obj({
    "name": STR, "since": TIME, "until": _nullable(TIME)})}}, "a printer's names, oldest first"))


def printer_name_json(n) -> dict:
    return {"name": n.name, "since": iso(n.since), "until": iso(n.until)}


# --- quotas, jobs, tokens, nodes --------------------------------------------------------------

QUOTA = _schema("Quota", _obj({
    "id": INT, "group_id": INT, "amount": MONEY, "period": _enum(QuotaPeriod),
    "cap": _nullable(MONEY), "next_due_at": _nullable(TIME), "last_applied_at": _nullable(TIME),
}, "a scheduled allocation to the personal accounts of a group's members"))


def quota_json(q: Quota) -> dict:
    return {
        "id": q.id, "group_id": q.group_id, "amount": money(q.amount),
        "period": QuotaPeriod(q.period).value, "cap": money(q.cap),
        "next_due_at": iso(q.next_due_at), "last_applied_at": iso(q.last_applied_at),
    }


JOB = _schema("Job", _obj({
    "uuid": {**STR, "description": "the job's identity (how a job is named everywhere)"},
    "id": {**_nullable(INT), "description": "the job log row's number (also accepted in URLs)"},
    "user_id": _nullable(INT), "username": STR,
    "printer_id": INT, "printer": {**STR, "description": "the printer's current name"},
    "account_id": _nullable(INT), "pages": INT, "colour_pages": INT,
    "duplex": BOOL, "copies": INT, "total_pages": INT, "paper_size": STR, "document_name": STR,
    "cost": MONEY, "status": _enum(JobStatus), "reason": STR, "client": STR, "origin": STR,
    "created_at": _nullable(TIME), "problem": STR,
    "released_by": {**STR, "description": "who released the held job (as the audit log names "
                                          "actors: token:3, user:ann); empty if nobody did"},
    "cancelled_by": {**STR, "description": "who cancelled it (scheduler: it expired); empty if "
                                           "nobody did"},
}, "one row of the job log; `problem` (empty for none) says why an administrator should look at "
   "it: a job printed offline outside the job limits or the account rules"))


def job_json(j: JobRecord) -> dict:
    return {
        "uuid": j.uuid, "id": j.id, "user_id": j.user_id, "username": j.username,
        "printer_id": j.printer_id, "printer": j.printer_name, "account_id": j.account_id,
        "pages": j.pages,
        "colour_pages": j.colour_pages, "duplex": j.duplex, "copies": j.copies,
        "total_pages": j.total_pages, "paper_size": j.paper_size,
        "document_name": j.document_name, "cost": money(j.cost), "status": JobStatus(j.status).value,
        "reason": j.reason, "client": j.client, "origin": j.origin, "created_at": iso(j.created_at),
        "problem": j.problem, "released_by": j.released_by, "cancelled_by": j.cancelled_by,
    }


DECISION = _schema("Decision", _obj({
    "action": _enum(JobAction), "cost": MONEY, "reason": STR, "account_id": _nullable(INT),
}, "what happened to a job: print (charged now), hold (charged on release) or deny"))


def decision_json(d: Decision) -> dict:
    return {"action": JobAction(d.action).value, "cost": money(d.cost), "reason": d.reason,
            "account_id": d.account_id}


IMPORT_RESULT = _schema("ImportedJob", _obj({
    "decision": ref("Decision"), "cost": MONEY, "charged": BOOL, "job": ref("Job"),
    "account": {"oneOf": [ref("Account"), {"type": "null"}]},
    "balance": _nullable(MONEY),
}, "the decision on an imported job, the job log row and the charged account's balance after"))

TOKEN = _schema("ApiToken", _obj({
    "id": INT, "name": STR, "user_id": _nullable(INT), "created_at": TIME,
    "last_used_at": _nullable(TIME),
}, "an API token (the token itself is shown only when it is created)"))


def token_json(t: ApiToken) -> dict:
    return {"id": t.id, "name": t.name, "user_id": t.user_id, "created_at": iso(t.created_at),
            "last_used_at": iso(t.last_used_at)}


NEW_TOKEN = _schema("NewApiToken", _obj({
    "token": {**STR, "description": "the bearer token; shown only now, keep it"},
    "api_token": ref("ApiToken"),
}))

NODE = _schema("Node", _obj({
    "name": STR, "role": {"type": "string", "enum": ["provider", "site", "device"]},
    "status": {"type": "string", "enum": ["pending", "approved", "rejected"]},
    "address": STR, "created_at": _nullable(TIME), "approved_at": _nullable(TIME),
}, "a Print Provider, Site Server or device gateway; never its credential"))


def node_json(node) -> dict:
    return {"name": node.name, "role": node.role, "status": str(getattr(node.status, "value", node.status)),
            "address": node.address or "", "created_at": iso(node.created_at),
            "approved_at": iso(node.approved_at)}


NODE_INVITATION = _schema("NodeInvitation", _obj({
    "name": STR, "role": {"type": "string", "enum": ["provider", "site", "device"]},
    "approve": {**BOOL, "description": "enrolling approves the node at once (else it waits as pending)"},
    "created_at": _nullable(TIME), "expires_at": TIME,
    "expired": {**BOOL, "description": "the code can no longer be used"},
}, "an invitation to enrol a node; never its code"))


def node_invitation_json(invitation, now: datetime) -> dict:
    return {"name": invitation.name, "role": invitation.role, "approve": invitation.approve,
            "created_at": iso(invitation.created_at), "expires_at": iso(invitation.expires_at),
            "expired": invitation.expires_at <= now}


NEW_NODE_INVITATION = _schema("NewNodeInvitation", _obj({
    "code": {**STR, "description": "the one-time enrolment code; shown only now"},
    "invitation": ref("NodeInvitation"),
}))

QUARANTINED_ENTRY = _schema("QuarantinedEntry", _obj({
    "id": INT, "node": STR, "key": STR, "kind": STR, "job_uuid": STR,
    "error": _obj({"code": STR, "message": STR}),
    "record": {"type": "object",
               "description": "the entry's fields, as the print server holds them"},
    "state": {"type": "string", "enum": list(QUARANTINE_STATES)},
    "quarantined_at": _nullable(TIME), "reported_at": _nullable(TIME),
    "updated_at": _nullable(TIME),
}, "a journal entry a print server set aside, with the error it got"))


def quarantined_json(e) -> dict:
    return {"id": e.id, "node": e.node, "key": e.key, "kind": e.kind, "job_uuid": e.job_uuid,
            "error": {"code": e.error_code, "message": e.error_message}, "record": e.record,
            "state": e.state, "quarantined_at": iso(e.quarantined_at),
            "reported_at": iso(e.reported_at), "updated_at": iso(e.updated_at)}


OFFLINE_POLICY = _schema("OfflinePolicy", _obj({
    "account_selection": _enum(OfflineAccountSelection),
    "offline_account_id": _nullable(INT), "restricted_credit": MONEY,
    "unknown_users": _enum(UnknownUsers), "unknown_user_id": _nullable(INT),
    "password_auth_offline": BOOL, "updated_at": _nullable(TIME),
}, "what Site Servers do while their link to the Application Server is down"))


def offline_policy_json(p: SiteOfflinePolicy) -> dict:
    return {"account_selection": OfflineAccountSelection(p.account_selection).value,
            "offline_account_id": p.offline_account_id,
            "restricted_credit": money(p.restricted_credit),
            "unknown_users": UnknownUsers(p.unknown_users).value,
            "unknown_user_id": p.unknown_user_id, "password_auth_offline": p.password_auth_offline,
            "updated_at": iso(p.updated_at)}


AUDIT_ENTRY = _schema("AuditEntry", _obj({
    "id": INT, "at": TIME,
    "actor": {**STR, "description": "who: token:3, user:ann, cli:root, provider:print01, scheduler"},
    "actor_name": {**STR, "description": "the token's name, the username, the OS user"},
    "address": {**STR, "description": "where from: the peer address; the host of a command"},
    "detail": {**STR, "description": "a command's command line"},
    "action": {**STR, "description": "what: e.g. printer.update"},
    "object_kind": STR, "object_id": STR, "object_name": STR,
    "before": {"type": ["object", "null"], "description": "the fields that changed, as they were"},
    "after": {"type": ["object", "null"], "description": "the fields that changed, as they are"},
}, "one administrative change; secrets are never shown (set, changed, removed)"))


def audit_json(e: AuditEntry) -> dict:
    return {"id": e.id, "at": iso(e.at), "actor": e.actor, "actor_name": e.actor_name,
            "address": e.address, "detail": e.detail, "action": e.action,
            "object_kind": e.object_kind, "object_id": e.object_id, "object_name": e.object_name,
            "before": e.before, "after": e.after}


USER_PAGE = _schema("UserPage", page_of("User"))
GROUP_PAGE = _schema("GroupPage", page_of("Group"))
ACCOUNT_PAGE = _schema("AccountPage", page_of("Account"))
TRANSACTION_PAGE = _schema("TransactionPage", page_of("Transaction"))
PRINTER_PAGE = _schema("PrinterPage", page_of("Printer"))
QUOTA_PAGE = _schema("QuotaPage", page_of("Quota"))
JOB_PAGE = _schema("JobPage", page_of("Job"))
TOKEN_PAGE = _schema("ApiTokenPage", page_of("ApiToken"))
NODE_PAGE = _schema("NodePage", page_of("Node"))
NODE_INVITATION_PAGE = _schema("NodeInvitationPage", page_of("NodeInvitation"))
QUARANTINE_PAGE = _schema("QuarantinedEntryPage", page_of("QuarantinedEntry"))
AUDIT_PAGE = _schema("AuditEntryPage", page_of("AuditEntry"))

INDEX = _schema("ApiIndex", _obj({"name": STR, "version": STR, "openapi": STR}))


def page_json(items, total: int, offset: int, limit: int, serialise) -> dict:
    return {"items": [serialise(i) for i in items], "total": total, "offset": offset, "limit": limit}
