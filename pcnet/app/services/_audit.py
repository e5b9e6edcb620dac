"""How a record appears in the audit log: its fields as JSON values, the ones that changed, and
never a secret.

`view(record)` turns a domain record (a dataclass of `pcnet.domain.model` or `pcnet.store`)
into a JSON-able dict; `changes(before, after)` keeps what differs. A secret (a password, PIN,
token, node credential or enrolment code hash) is never shown: its field is named without
`_hash` and says only `set` (it has one), `changed` or `removed`.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timezone
from decimal import Decimal

from pcnet.domain.model import AuditEntry, SiteOfflinePolicy
from pcnet.money import format_money

#: Fields holding secrets, and the name the audit log shows them under.
SECRETS = {"password_hash": "password", "pin_hash": "pin", "token_hash": "token",
           "credential_hash": "credential", "code_hash": "enrolment_code"}


def _value(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if dataclasses.is_dataclass(value):
        return view(value)
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_value(v) for v in value]
    return str(value)


def view(record) -> dict | None:
    """A record's fields as JSON values (the secrets as `set` or null)."""
    if record is None:
        return None
    if isinstance(record, dict):
        return {str(k): _value(v) for k, v in record.items()}
    out = {}
    for f in dataclasses.fields(record):
        if not f.compare:
            continue   # derived for display (a job's printer name), not part of the record
        value = getattr(record, f.name)
        if f.name in SECRETS:
            out[SECRETS[f.name]] = "set" if value else None
        else:
            out[f.name] = _value(value)
    return out


def changes(before, after) -> tuple[dict | None, dict | None]:
    """(before, after) as the audit log keeps them: the whole record when it was created
    (`before` None) or deleted (`after` None), else only the fields that differ, a changed
    secret as `changed` (or `set`, `removed`)."""
    if before is None or after is None or isinstance(before, dict) or isinstance(after, dict):
        return view(before), view(after)
    old, new = view(before), view(after)
    b, a = {}, {}
    for key in new:
        if old.get(key) != new[key]:
            b[key], a[key] = old.get(key), new[key]
    for field, shown in SECRETS.items():
        if not hasattr(before, field):
            continue
        was, now = getattr(before, field), getattr(after, field)
        if was != now:
            b[shown] = "set" if was else None
            a[shown] = "removed" if not now else ("changed" if was else "set")
    return b, a


def identify(record) -> tuple[str, str]:
    """(object_id, object_name) of a record for the audit log."""
    if isinstance(record, SiteOfflinePolicy):
        return "1", "offline policy"
    for id_field, name_field in (("uuid", "document_name"), ("id", "username"), ("id", "name")):
        if hasattr(record, id_field) and hasattr(record, name_field):
            return str(getattr(record, id_field)), str(getattr(record, name_field) or "")
    if hasattr(record, "name"):
        return str(record.name), str(record.name)
    if hasattr(record, "id"):
        return str(record.id), ""
    return "", ""


_RESULT = object()


def entry_maker(actor, action: str, kind: str, *, before=None, after=_RESULT, subject=None,
                note: dict | None = None):
    """A function of a store write's result that makes its AuditEntry (see `IStore`'s
    `audit`): `before` is the record as it was (None for a create); `after` the record as it
    is (by default the write's result; None for a delete; or a function of the result);
    `subject` the record the row is about when it is neither (a group whose member changed);
    `note` what else to show with `after` (an amount, a comment). Nothing changed: no row."""

    def make(result) -> AuditEntry | None:
        now = result if after is _RESULT else (after(result) if callable(after) else after)
        old, new = changes(before, now)
        if before is not None and now is not None and not old and not new and not note:
            return None
        if note:
            new = {**(new or {}), **view(note)}
        object_id, object_name = identify(subject if subject is not None else
                                          (now if now is not None else before))
        return AuditEntry(action=action, object_kind=kind, object_id=object_id,
                          object_name=object_name, before=old, after=new, actor=actor.label,
                          actor_name=actor.name, address=actor.address, detail=actor.detail)

    return make
