"""Every malformed field of every Print Provider operation gets an `invalid` error naming the
field, on SQLite and on PostgreSQL: wrong types, integers of 2**63 and more (SQLite cannot bind
them), text with NUL characters (PostgreSQL refuses them) or lone surrogates (not UTF-8),
over-long strings, and negative, far-future or non-numeric times. Never `internal`, never a
logged traceback, and nothing written: the fields are checked before the store is asked."""

from __future__ import annotations

import json
import uuid as uuidlib
from decimal import Decimal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from pcnet.app.provider_ops import ProviderOps
from pcnet.app.services import Services
from pcnet.domain.model import CostModel, HoldMode
from pcnet.errors import InvalidInput
from pcnet.net.line import Operations
from tests.fakes import ProviderSession

D = Decimal
MISSING = object()

#: Bad values every text field gets, and every whole-number field.
BAD_TEXT = [5, 1.5, True, [], {}, "\ud800", "a\x00b", "x" * 5000]
BAD_COUNT = [-1, 2**63, 2**64, 1.5, "4", True, [], {}]
BAD_ID = [0, -1, 2**63, 1.5, "1", True, [], {}]
BAD_UUID = [5, "not-a-uuid", "\ud800", "0" * 30 + "\x00", "x" * 65, []]
NOW = reactor.seconds()
BAD_TIME = [-1, 0, 1e20, 2**63, NOW + 3 * 86400, "2025-01-01", True, [], {}]

JOB_FIELDS = {
    "uuid": BAD_UUID + [MISSING, None, ""],
    "queue": BAD_TEXT + [MISSING, None, ""],
    "printer_id": BAD_ID,
    "user": BAD_TEXT + [MISSING, None, ""],
    "pages": BAD_COUNT + [MISSING, None],
    "colour_pages": BAD_COUNT + [5],          # more than the 4 pages
    "copies": BAD_COUNT + [0],
    "duplex": ["yes", 1, 0, None, []],
    "paper_size": BAD_TEXT,
    "document_name": BAD_TEXT,
    "account_id": BAD_ID,
}

CASES = {
    "job.submit": JOB_FIELDS,
    "job.offline": {**JOB_FIELDS, "printed_at": BAD_TIME},
    "job.printed": {"uuid": BAD_UUID + [MISSING], "printer_id": BAD_ID},
    "job.status": {"uuid": BAD_UUID + [MISSING]},
    "printers.register": {
        "printers": [MISSING, None, "office", 5, {}, [5], [None], [{}], [{"queue": 5}],
                     [{"queue": "\ud800"}], [{"queue": "q\x00"}], [{"queue": "x" * 256}],
                     [{"queue": "office", "location": "\x00"}],
                     [{"queue": "office"}, {"queue": "new", "location": 5}],
                     [{"queue": "q"}] * 10_001],
    },
    "journal.quarantined": {
        "key": [MISSING, 5, "../etc/passwd", "a b", "\ud800", "x" * 129],
        "kind": [MISSING, 5, "\x00", "x" * 65],
        "uuid": [5, "nope", "\ud800"],
        "error": [MISSING, None, "boom", [], {"message": "no code"}, {"code": 5},
                  {"code": "\ud800"}, {"code": "x", "message": "\x00"},
                  {"code": "x", "message": "m" * 2001}],
        "record": [MISSING, None, "x", [], {"blob": "x" * 70_000}],
        "state": [5, "retrying", "bogus"],
        "quarantined_at": BAD_TIME,
    },
}


async def world(store):
    handlers = ProviderOps(Services(store, reactor)).register(Operations()).handlers()
    alice = await store.create_user("alice", initial_balance=D("10.0000"))
    office = await store.create_printer("office", server="print01", queue="office",
                                        cost_model=CostModel(grey=D("0.1000")))
    await store.create_printer("secure", server="print01", queue="secure", hold_mode=HoldMode.HOLD)
    job = dict(uuid=str(uuidlib.uuid4()), queue="office", printer_id=office.id, user="alice",
               pages=4, colour_pages=1, copies=1, duplex=False, paper_size="A4",
               document_name="report.pdf", account_id=alice.personal_account_id, cups_job_id=3)
    bases = {
        "job.submit": job,
        "job.offline": dict(job, printed_at=NOW - 60),
        "job.printed": {"uuid": str(uuidlib.uuid4()), "printer_id": office.id},
        "job.status": {"uuid": str(uuidlib.uuid4())},
        "printers.register": {"printers": [{"queue": "office", "location": "hall"}]},
        "journal.quarantined": {"key": "000000000001-" + job["uuid"], "kind": "job.offline",
                                "uuid": job["uuid"], "error": {"code": "invalid", "message": "m"},
                                "record": {"uuid": job["uuid"], "note": "\ud800\x00 kept escaped"},
                                "state": "quarantined", "quarantined_at": NOW - 30},
    }
    return handlers, bases, alice


async def call(handler, msg):
    """What pcnet/net/line.py hands a handler: the request as it came off the wire."""
    return await defer.maybeDeferred(handler, ProviderSession("print01"), json.loads(json.dumps(msg)))


@pytest_twisted.ensureDeferred
async def test_every_malformed_field_of_every_provider_op_is_invalid(store, tracebacks):
    handlers, bases, alice = await world(store)
    assert set(CASES) == set(handlers), "an operation without field cases"
    wrong = []
    for op, fields in CASES.items():
        for field, values in fields.items():
            for value in values:
                msg = dict(bases[op])
                if value is MISSING:
                    msg.pop(field, None)
                else:
                    msg[field] = value
                if field == "queue":
                    msg.pop("printer_id", None)   # the queue names the printer
                try:
                    await call(handlers[op], msg)
                except InvalidInput as e:
                    if e.code != "invalid" or not (e.field or "").startswith(field):
                        wrong.append((op, field, repr(value)[:60], e.code, e.field))
                except Exception as e:
                    wrong.append((op, field, repr(value)[:60], type(e).__name__, str(e)[:80]))
                else:
                    wrong.append((op, field, repr(value)[:60], "accepted"))
    assert wrong == []
    assert tracebacks == []
    # Nothing reached the job log or the ledger.
    assert (await store.list_jobs())[1] == 0
    assert (await store.get_account(alice.personal_account_id)).balance == D("10.0000")


@pytest_twisted.ensureDeferred
async def test_the_well_formed_requests_those_cases_start_from_are_accepted(store, tracebacks):
    """The positive control: each base request passes the checks (job.printed and job.status
    name no such job, so they get not_found, which is past the field checks)."""
    from pcnet.errors import NotFound

    handlers, bases, _ = await world(store)
    for op in ("job.submit", "job.offline", "printers.register", "journal.quarantined"):
        reply = await call(handlers[op], bases[op])
        assert isinstance(reply, dict), op
    submitted = await store.get_job(bases["job.submit"]["uuid"])
    assert submitted.cost == D("0.8000")   # 3 grey sides at 0.10 and one colour side at 0.50
    for op in ("job.printed", "job.status"):
        with pytest.raises(NotFound):
            await call(handlers[op], bases[op])
    entry, = (await store.list_quarantined())[0]
    assert entry.record["note"] == "\ud800\x00 kept escaped"
    assert tracebacks == []
