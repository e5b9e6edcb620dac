"""`Store`: the `IStore` implementation, the same for both engines.

Each method converts its arguments to column values (money to minor units, times to
microseconds, enums to strings, cost models and filters to JSON), reads the clock, and hands one
query function of `pcnet.store._queries` to the engine, which runs it in one database
transaction. Only the hot path, `record_job`, asks the engine directly, because each engine has
its own fast way to do it (group commit on SQLite, one function call on PostgreSQL).
"""

from __future__ import annotations

import functools
import json
import uuid as uuidlib

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from zope.interface import implementer

from pcnet.domain.model import FailureMode, HoldMode, JobStatus, QuotaPeriod
from pcnet.errors import InvalidInput
from pcnet.interfaces import IStore
from pcnet.store import _queries as q
from pcnet.store._records import SchemaStatus
from pcnet.store._convert import (
    cost_model_json,
    entry_params,
    offline_policy_params,
    enum_value,
    filters_json,
    job_params,
    micros,
    minor,
    seconds_to_micros,
)


def _deferred(method):
    """Run an `async def` method as a Deferred (errors in argument conversion included)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return Deferred.fromCoroutine(method(*args, **kwargs))

    return wrapper


def _choice(enum_type, value, field):
    try:
        return enum_type(enum_value(value)).value
    except ValueError:
        options = ", ".join(m.value for m in enum_type)
        raise InvalidInput(f"{field}: {enum_value(value)!r} is not one of {options}") from None


def _printer_columns(fields: dict) -> dict:
    out = {}
    for name, value in fields.items():
        if name == "cost_model":
            out[name] = cost_model_json(value)
        elif name == "filters":
            out[name] = filters_json(value)
        elif name == "hold_mode":
            out[name] = _choice(HoldMode, value if value is not None else HoldMode.NONE, name)
        elif name == "failure_mode":
            out[name] = _choice(FailureMode, value if value is not None else FailureMode.PRINT_LOG_LATER, name)
        else:
            out[name] = value
    return out


def _quota_columns(fields: dict) -> dict:
    out = {}
    for name, value in fields.items():
        if name in ("amount", "cap"):
            out[name] = minor(value)
        elif name == "period":
            out[name] = _choice(QuotaPeriod, value, name)
        elif name == "next_due_at":
            if value is None:
                raise InvalidInput("next_due_at: required")
            out[name] = micros(value)
        else:
            out[name] = value
    return out


def _page(offset, limit) -> tuple[int, int]:
    """Validated paging arguments (the engines disagree on negative ones)."""
    try:
        offset, limit = int(offset), int(limit)
    except (TypeError, ValueError):
        raise InvalidInput("offset and limit must be whole numbers") from None
    if offset < 0 or limit < 0:
        raise InvalidInput("offset and limit must not be negative")
    return offset, limit


def _credential_text(credential_hash) -> str:
    if isinstance(credential_hash, (bytes, bytearray)):
        return bytes(credential_hash).hex()
    if not credential_hash:
        raise InvalidInput("credential_hash: required")
    return str(credential_hash)


@implementer(IStore)
class Store:
    """pcnet's system of record on one engine (`pcnet.store.open_store` makes one)."""

    def __init__(self, engine, *, reactor, clock=None):
        self._engine = engine
        self._clock = clock if clock is not None else reactor
        self.engine = engine.name
        #: Migration versions the last start() applied (empty when the schema was current).
        self.applied_migrations: list[int] = []

    def __repr__(self):
        where = getattr(self._engine, "address", None) or getattr(self._engine, "path", "")
        return f"<Store {self.engine} {where}>"

    def _now(self) -> int:
        return seconds_to_micros(self._clock.seconds())

    def _run(self, fn, *args, audit=None):
        """Run the write `fn` in one transaction; with `audit` (an AuditEntry, or a function
        of the result returning one), its audit row is written in the same transaction."""
        if audit is None:
            return maybeDeferred(self._engine.run, fn, *args)
        return maybeDeferred(self._engine.run, q.audited, fn, audit, self._now(), *args)

    def _read(self, fn, *args):
        return maybeDeferred(self._engine.run, fn, *args, readonly=True)

    # --- life cycle ----------------------------------------------------------------------------

    @_deferred
    async def start(self):
        self.applied_migrations = await self._engine.start(self._now())
        return self.applied_migrations

    def stop(self):
        return ensureDeferred(self._engine.stop())

    # --- users and groups ------------------------------------------------------------------------

    @_deferred
    async def create_user(self, username, *, full_name="", email="", department="", office="",
                          card_numbers=(), password_hash=None, pin_hash=None, admin=False,
                          initial_balance=None, restricted=True, overdraft=None, audit=None):
        fields = dict(full_name=full_name, email=email, department=department, office=office,
                      card_numbers=card_numbers, password_hash=password_hash, pin_hash=pin_hash,
                      admin=admin)
        return await self._run(q.create_user, self._now(), username, fields,
                               minor(initial_balance), str(uuidlib.uuid4()), restricted,
                               minor(overdraft) or 0, audit=audit)

    def get_user(self, user_id):
        return self._read(q.get_user, user_id)

    def get_user_by_name(self, username):
        return self._read(q.get_user_by_name, username)

    def find_user_by_card(self, card_number):
        return self._read(q.find_user_by_card, card_number)

    @_deferred
    async def list_users(self, offset=0, limit=100, search=None):
        return await self._read(q.list_users, *_page(offset, limit), search)

    def update_user(self, user_id, *, audit=None, **fields):
        return self._run(q.update_user, user_id, fields, audit=audit)

    def create_group(self, name, description="", *, audit=None):
        return self._run(q.create_group, self._now(), name, description, audit=audit)

    def get_group(self, group_id):
        return self._read(q.get_group, group_id)

    def get_group_by_name(self, name):
        return self._read(q.get_group_by_name, name)

    def list_groups(self):
        return self._read(q.list_groups)

    def add_group_member(self, group_id, user_id, *, audit=None):
        return self._run(q.add_group_member, group_id, user_id, audit=audit)

    def remove_group_member(self, group_id, user_id, *, audit=None):
        return self._run(q.remove_group_member, group_id, user_id, audit=audit)

    def group_members(self, group_id):
        return self._read(q.group_members, group_id)

    def user_groups(self, user_id):
        return self._read(q.user_groups, user_id)

    # --- accounts and ledger ---------------------------------------------------------------------

    @_deferred
    async def create_shared_account(self, name, *, parent_id=None, pin_hash=None, restricted=False,
                                    overdraft=None, comment="", initial_balance=None, audit=None):
        fields = dict(parent_id=parent_id, pin_hash=pin_hash, restricted=restricted,
                      overdraft=minor(overdraft) or 0, comment=comment)
        return await self._run(q.create_shared_account, self._now(), name, fields,
                               minor(initial_balance), str(uuidlib.uuid4()), audit=audit)

    def get_account(self, account_id):
        return self._read(q.get_account, account_id)

    def get_account_by_name(self, name):
        return self._read(q.get_account_by_name, name)

    @_deferred
    async def list_accounts(self, kind=None, offset=0, limit=100):
        kind = None if kind is None else enum_value(kind)
        return await self._read(q.list_accounts, kind, *_page(offset, limit))

    @_deferred
    async def update_account(self, account_id, *, audit=None, **fields):
        if "overdraft" in fields:
            fields["overdraft"] = minor(fields["overdraft"]) or 0
        return await self._run(q.update_account, account_id, fields, audit=audit)

    def grant_account_access(self, account_id, *, user_id=None, group_id=None, audit=None):
        return self._run(q.grant_account_access, account_id, user_id, group_id, audit=audit)

    def revoke_account_access(self, account_id, *, user_id=None, group_id=None, audit=None):
        return self._run(q.revoke_account_access, account_id, user_id, group_id, audit=audit)

    def account_access(self, account_id):
        return self._read(q.account_access, account_id)

    def user_can_use_account(self, user_id, account_id):
        return self._read(q.user_can_use_account, user_id, account_id)

    @_deferred
    async def apply_ledger_entry(self, entry, *, guard=False, audit=None):
        return await self._run(q.apply_ledger_entry, entry_params(entry, self._now()), guard,
                               audit=audit)

    @_deferred
    async def set_balance(self, account_id, balance, *, uuid, comment="", origin="app",
                          audit=None):
        return await self._run(q.set_balance, account_id, minor(balance), uuid, comment, origin,
                               self._now(), audit=audit)

    def find_transaction(self, uuid):
        return self._read(q.find_transaction, uuid)

    @_deferred
    async def list_transactions(self, account_id, offset=0, limit=100):
        return await self._read(q.list_transactions, account_id, *_page(offset, limit))

    # --- printers --------------------------------------------------------------------------------

    @_deferred
    async def create_printer(self, name, *, server="", queue="", location="", cost_model=None,
                             filters=None, hold_mode=None, failure_mode=None, pdl="",
                             disabled=False, audit=None):
        columns = _printer_columns(dict(
            server=server, queue=queue, location=location, cost_model=cost_model,
            filters=filters, hold_mode=hold_mode, failure_mode=failure_mode, pdl=pdl,
            disabled=bool(disabled)))
        return await self._run(q.create_printer, self._now(), name, columns, audit=audit)

    def get_printer(self, printer_id):
        return self._read(q.get_printer, printer_id)

    def get_printer_by_name(self, name):
        return self._read(q.get_printer_by_name, name)

    def find_printer(self, server, queue):
        return self._read(q.find_printer, server, queue)

    def list_printers(self):
        return self._read(q.list_printers)

    @_deferred
    async def update_printer(self, printer_id, *, audit=None, **fields):
        return await self._run(q.update_printer, self._now(), printer_id, _printer_columns(fields),
                               audit=audit)

    def printer_names(self, printer_id):
        return self._read(q.printer_names, printer_id)

    # --- jobs ------------------------------------------------------------------------------------

    @_deferred
    async def record_job(self, job, charge=None, *, guard=True):
        now = self._now()
        return await self._engine.record_job(
            job_params(job, now), None if charge is None else entry_params(charge, now), guard)

    @_deferred
    async def update_job_status(self, job_uuid, status, *, reason="", charge=None, guard=True,
                                by="", audit=None):
        now = self._now()
        return await self._run(q.update_job_status, now, job_uuid, _choice(JobStatus, status, "status"),
                               reason, None if charge is None else entry_params(charge, now), guard,
                               by or "", audit=audit)

    @_deferred
    async def mark_job_printed(self, job_uuid, *, printer_id, cost, reason="", charge=None,
                               guard=False):
        """A held or released job printed on `printer_id` (a Find-Me job: the printer it was
        released at) at `cost`: status printed, printer, cost and `charge` in one transaction.
        Idempotent on a job already printed; Conflict for a cancelled, expired or denied one.
        Returns (JobRecord, Transaction | None)."""
        now = self._now()
        return await self._run(q.mark_job_printed, now, job_uuid, printer_id, minor(cost),
                               reason, None if charge is None else entry_params(charge, now), guard)

    def get_job(self, job_uuid):
        return self._read(q.get_job, job_uuid)

    def get_job_by_id(self, job_id):
        return self._read(q.get_job_by_id, job_id)

    @_deferred
    async def list_jobs(self, offset=0, limit=100, *, user_id=None, printer_id=None, account_id=None,
                        status=None, since=None, until=None, problem=None):
        filters = dict(user_id=user_id, printer_id=printer_id, account_id=account_id,
                       status=None if status is None else _choice(JobStatus, status, "status"),
                       since=micros(since), until=micros(until),
                       problem=None if problem is None else bool(problem))
        return await self._read(q.list_jobs, *_page(offset, limit), filters)

    @_deferred
    async def find_duplicate_job(self, user_id, printer_id, document_name, pages, since):
        return await self._read(q.find_duplicate_job, user_id, printer_id, document_name, pages,
                                micros(since))

    # --- quotas ----------------------------------------------------------------------------------

    @_deferred
    async def create_quota(self, group_id, amount, period, *, cap=None, next_due_at, audit=None):
        c = _quota_columns(dict(amount=amount, period=period, cap=cap, next_due_at=next_due_at))
        return await self._run(q.create_quota, group_id, c["amount"], c["period"], c["cap"],
                               c["next_due_at"], audit=audit)

    def list_quotas(self):
        return self._read(q.list_quotas)

    @_deferred
    async def update_quota(self, quota_id, *, audit=None, **fields):
        return await self._run(q.update_quota, quota_id, _quota_columns(fields), audit=audit)

    def delete_quota(self, quota_id, *, audit=None):
        return self._run(q.delete_quota, quota_id, audit=audit)

    @_deferred
    async def due_quotas(self, now):
        return await self._read(q.due_quotas, micros(now))

    @_deferred
    async def mark_quota_applied(self, quota_id, applied_at, next_due_at):
        return await self._run(q.mark_quota_applied, quota_id, micros(applied_at), micros(next_due_at))

    # --- API tokens ------------------------------------------------------------------------------

    def create_api_token(self, name, token_hash, *, user_id=None, audit=None):
        return self._run(q.create_api_token, self._now(), name, token_hash, user_id, audit=audit)

    def find_api_token(self, token_hash):
        return self._run(q.find_api_token, self._now(), token_hash)

    def list_api_tokens(self):
        return self._read(q.list_api_tokens)

    def revoke_api_token(self, token_id, *, audit=None):
        return self._run(q.revoke_api_token, token_id, audit=audit)

    # --- nodes -----------------------------------------------------------------------------------

    @_deferred
    async def node_hello(self, role, name, credential_hash, address="", *, code_hash=None,
                         auto_approve=False):
        return await self._run(q.node_hello, self._now(), role, name,
                               _credential_text(credential_hash), address or "",
                               None if code_hash is None else _credential_text(code_hash),
                               bool(auto_approve))

    @_deferred
    async def create_node_invitation(self, name, role, code_hash, expires_at, *, approve,
                                     audit=None):
        return await self._run(q.create_node_invitation, self._now(), name, role,
                               _credential_text(code_hash), micros(expires_at), bool(approve),
                               audit=audit)

    def list_node_invitations(self):
        return self._read(q.list_node_invitations)

    def delete_node_invitation(self, name, *, audit=None):
        return self._run(q.delete_node_invitation, name, audit=audit)

    def delete_node(self, name, *, audit=None):
        return self._run(q.delete_node, name, audit=audit)

    def get_node(self, name):
        return self._read(q.get_node, name)

    def list_nodes(self):
        return self._read(q.list_nodes)

    def set_node_status(self, name, status, *, audit=None):
        return self._run(q.set_node_status, self._now(), name, enum_value(status), audit=audit)

    # --- journal entries quarantined by providers ------------------------------------------------

    @_deferred
    async def report_quarantined(self, node, key, *, kind, job_uuid="", error_code, error_message,
                                 record, state="quarantined", quarantined_at=None):
        now = self._now()
        record_json = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return await self._run(q.report_quarantined, now, node, key, kind, job_uuid or "",
                               error_code, error_message, record_json, enum_value(state),
                               micros(quarantined_at) if quarantined_at is not None else now)

    def get_quarantined(self, entry_id):
        return self._read(q.get_quarantined, entry_id)

    @_deferred
    async def list_quarantined(self, offset=0, limit=100, *, node=None, state=None):
        return await self._read(q.list_quarantined, *_page(offset, limit), node,
                                None if state is None else enum_value(state))

    def set_quarantined_state(self, entry_id, state, *, audit=None):
        return self._run(q.set_quarantined_state, self._now(), entry_id, enum_value(state),
                         audit=audit)

    # --- the Site Server's offline policy --------------------------------------------------------

    def get_offline_policy(self):
        return self._read(q.get_offline_policy)

    @_deferred
    async def set_offline_policy(self, policy, *, audit=None):
        return await self._run(q.set_offline_policy, self._now(), offline_policy_params(policy),
                               audit=audit)

    # --- the audit log ---------------------------------------------------------------------------

    @_deferred
    async def list_audit(self, offset=0, limit=100, *, actor=None, actor_kind=None, action=None,
                         object_kind=None, object_id=None, since=None, until=None):
        filters = dict(actor=actor, actor_kind=actor_kind, action=action, object_kind=object_kind,
                       object_id=None if object_id is None else str(object_id),
                       since=micros(since), until=micros(until))
        return await self._read(q.list_audit, *_page(offset, limit), filters)

    # --- the change feed -------------------------------------------------------------------------

    @_deferred
    async def changes_since(self, seq, limit=1000):
        seq, limit = _page(seq, limit)
        return await self._run(q.changes_since, seq, limit)

    def last_change_seq(self):
        return self._run(q.last_change_seq)

    # --- watching the store ------------------------------------------------------------------

    @_deferred
    async def schema_status(self):
        from pcnet.store._migrations import available

        applied = await self._read(q.applied_migrations)
        latest = len(available(self.engine))
        return SchemaStatus(version=max(applied, default=0), latest=latest,
                            current=set(range(1, latest + 1)) <= set(applied))

    def pool_stats(self) -> dict:
        return self._engine.pool_stats()

    def change_listener(self, clock, *, interval: float):
        from pcnet.store._watch import listener_for

        return listener_for(self, self._engine, clock, interval=interval)
