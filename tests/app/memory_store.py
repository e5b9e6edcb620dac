"""A small in-memory stand-in for the parts of `IStore` the provider operations use.

It follows the documented semantics (idempotent uuids, the balance guard, NotFound/Conflict), so
the provider operations can be tested without a database; the same tests also run on the real
SQLite store when it is available (see test_provider_ops.py).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timezone

from twisted.internet import defer

from pcnet.domain.ledger import entry_allowed
from pcnet.domain.model import (
    Account,
    AccountKind,
    CostModel,
    FailureMode,
    Filters,
    HoldMode,
    JobRecord,
    JobStatus,
    Printer,
    Transaction,
    User,
)
from pcnet.errors import Conflict, InsufficientFunds, NotFound
from pcnet.money import ZERO


def _d(fn):
    def wrapper(*args, **kwargs):
        return defer.maybeDeferred(fn, *args, **kwargs)
    return wrapper


class MemoryStore:
    engine = "memory"

    def __init__(self):
        self._ids = itertools.count(1)
        self.users: dict[int, User] = {}
        self.accounts: dict[int, Account] = {}
        self.printers: dict[int, Printer] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.txns: dict[str, Transaction] = {}
        self.nodes: dict = {}

    # users / accounts
    @_d
    def create_user(self, username, *, initial_balance=None, restricted=True, overdraft=None, **kw):
        if any(u.username == username for u in self.users.values()):
            raise Conflict(username)
        aid = next(self._ids)
        self.accounts[aid] = Account(aid, username, AccountKind.PERSONAL, ZERO, restricted,
                                     overdraft or ZERO, owner_user_id=None)
        uid = next(self._ids)
        user = User(uid, username, personal_account_id=aid)
        self.users[uid] = user
        if initial_balance:
            self.accounts[aid] = replace(self.accounts[aid], balance=initial_balance)
        return user

    @_d
    def get_user_by_name(self, username):
        for u in self.users.values():
            if u.username == username:
                return u
        raise NotFound(f"no user {username}")

    @_d
    def get_account(self, account_id):
        try:
            return self.accounts[account_id]
        except KeyError:
            raise NotFound(f"no account {account_id}") from None

    @_d
    def user_can_use_account(self, user_id, account_id):
        return self.users[user_id].personal_account_id == account_id

    def _apply(self, entry, guard):
        if entry.uuid in self.txns:
            return self.txns[entry.uuid]
        account = self.accounts[entry.account_id]
        if guard and not entry_allowed(account.balance, entry.amount, restricted=account.restricted,
                                       overdraft=account.overdraft):
            raise InsufficientFunds(f"balance {account.balance}")
        balance = account.balance + entry.amount
        self.accounts[entry.account_id] = replace(account, balance=balance)
        txn = Transaction(next(self._ids), entry.uuid, entry.account_id, entry.amount, balance,
                          entry.kind, entry.reference, entry.comment, entry.origin,
                          entry.created_at or datetime.now(timezone.utc))
        self.txns[entry.uuid] = txn
        return txn

    @_d
    def apply_ledger_entry(self, entry, *, guard=False):
        return self._apply(entry, guard)

    # printers
    @_d
    def create_printer(self, name, *, server="", queue="", location="", cost_model=None,
                       filters=None, hold_mode=None, failure_mode=None, pdl=""):
        if any(p.name == name for p in self.printers.values()):
            raise Conflict(f"printer {name} exists")
        pid = next(self._ids)
        p = Printer(pid, name, server, queue, location, cost_model or CostModel(),
                    filters or Filters(), hold_mode or HoldMode.NONE,
                    failure_mode or FailureMode.PRINT_LOG_LATER, pdl)
        self.printers[pid] = p
        return p

    @_d
    def get_printer(self, printer_id):
        try:
            return self.printers[printer_id]
        except KeyError:
            raise NotFound(f"no printer {printer_id}") from None

    @_d
    def find_printer(self, server, queue):
        for p in self.printers.values():
            if p.server == server and p.queue == queue:
                return p
        return None

    @_d
    def update_printer(self, printer_id, **fields):
        self.printers[printer_id] = replace(self.printers[printer_id], **fields)
        return self.printers[printer_id]

    # jobs
    @_d
    def record_job(self, job, charge=None, *, guard=True):
        if job.uuid in self.jobs:
            stored = self.jobs[job.uuid]
            txn = next((t for t in self.txns.values() if t.reference == job.uuid), None)
            return stored, txn
        txn = self._apply(charge, guard) if charge is not None else None
        self.jobs[job.uuid] = replace(job, id=next(self._ids))
        return self.jobs[job.uuid], txn

    @_d
    def update_job_status(self, job_uuid, status, *, reason="", charge=None, guard=True):
        job = self.jobs.get(job_uuid)
        if job is None:
            raise NotFound(f"no job {job_uuid}")
        txn = self._apply(charge, guard) if charge is not None else None
        cost = -charge.amount if charge is not None else job.cost
        self.jobs[job_uuid] = replace(job, status=JobStatus(status), reason=reason, cost=cost)
        return self.jobs[job_uuid], txn

    @_d
    def mark_job_printed(self, job_uuid, *, printer_id, cost, reason="", charge=None, guard=False):
        job = self.jobs.get(job_uuid)
        if job is None:
            raise NotFound(f"no job {job_uuid}")
        if job.status is JobStatus.PRINTED:
            return job, next((t for t in self.txns.values() if t.reference == job_uuid), None)
        if job.status in (JobStatus.DENIED, JobStatus.CANCELLED, JobStatus.EXPIRED):
            raise Conflict(f"job {job_uuid} is {job.status.value}")
        txn = self._apply(charge, guard) if charge is not None else None
        self.jobs[job_uuid] = replace(job, status=JobStatus.PRINTED, printer_id=printer_id,
                                      cost=cost, reason=reason)
        return self.jobs[job_uuid], txn

    @_d
    def get_job(self, job_uuid):
        try:
            return self.jobs[job_uuid]
        except KeyError:
            raise NotFound(f"no job {job_uuid}") from None

    @_d
    def list_jobs(self, offset=0, limit=100, *, user_id=None, printer_id=None, account_id=None,
                  status=None, since=None, until=None):
        jobs = [j for j in self.jobs.values()
                if (user_id is None or j.user_id == user_id)
                and (printer_id is None or j.printer_id == printer_id)
                and (status is None or j.status is JobStatus(status))
                and (since is None or j.created_at >= since)
                and (until is None or j.created_at <= until)]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        return jobs[offset:offset + limit], len(jobs)

    @_d
    def find_duplicate_job(self, user_id, printer_id, document_name, pages, since):
        return False

    def charges(self, job_uuid):
        return [t for t in self.txns.values() if t.reference == job_uuid]
