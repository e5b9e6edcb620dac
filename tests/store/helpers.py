"""Small builders for store tests."""

import uuid as uuidlib
from decimal import Decimal

from pcnet.domain.model import JobRecord, JobStatus, LedgerEntry, TransactionKind

D = Decimal


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def entry(account_id, amount, kind=TransactionKind.CHARGE, **kw) -> LedgerEntry:
    return LedgerEntry(uuid=kw.pop("uuid", None) or new_uuid(), account_id=account_id,
                       amount=D(amount), kind=kind, **kw)


def job(user, printer, *, cost="0.2000", status=JobStatus.PRINTED, account_id=None, **kw) -> JobRecord:
    fields = dict(
        uuid=new_uuid(), user_id=user.id, username=user.username, printer_id=printer.id,
        account_id=account_id if account_id is not None else user.personal_account_id,
        pages=2, colour_pages=0, duplex=False, copies=1, paper_size="A4",
        document_name="report.pdf", cost=D(cost), status=status, reason="", client="ws1")
    fields.update(kw)
    return JobRecord(**fields)


def charge_for(j: JobRecord, **kw) -> LedgerEntry:
    return entry(j.account_id, -j.cost, reference=j.uuid, uuid=kw.pop("uuid", f"{j.uuid}:charge"), **kw)


async def ledger_sum(store, account_id) -> Decimal:
    """The sum of an account's transactions, read back through the store."""
    txns, total = await store.list_transactions(account_id, limit=1_000_000)
    assert len(txns) == total
    return sum((t.amount for t in txns), D(0))


async def check_ledger(store, account_id) -> Decimal:
    """balance == sum of the ledger, and each row's balance_after is the running sum; returns
    the balance."""
    account = await store.get_account(account_id)
    assert await ledger_sum(store, account_id) == account.balance
    txns, _ = await store.list_transactions(account_id, limit=100_000)
    running = D(0)
    for t in reversed(txns):   # oldest first
        running += t.amount
        assert t.balance_after == running, (t, running)
    assert running == account.balance
    return account.balance
