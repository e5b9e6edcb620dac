"""`mark_job_printed`: a held job printing (Find-Me: on another printer, at its price), on both
engines."""

import dataclasses

import pytest
import pytest_twisted

from pcnet.domain.model import JobStatus
from pcnet.errors import Conflict, InsufficientFunds, NotFound

from .helpers import D, charge_for, job, ledger_sum, new_uuid


@pytest_twisted.ensureDeferred
async def test_a_find_me_job_is_recorded_on_the_printer_it_printed_at_with_its_cost(store):
    user = await store.create_user("walt", initial_balance=D("2"))
    virtual = await store.create_printer("FindMe", server="print01", queue="findme")
    target = await store.create_printer("Colour", server="print01", queue="colour")
    held, _ = await store.record_job(job(user, virtual, cost="0.5", status=JobStatus.HELD))
    await store.update_job_status(held.uuid, JobStatus.RELEASED, reason="released at Colour")
    charge = charge_for(dataclasses.replace(held, cost=D("1.2")))
    printed, t = await store.mark_job_printed(held.uuid, printer_id=target.id, cost=D("1.2"),
                                              reason="Find-Me: released at Colour", charge=charge)
    assert printed.status is JobStatus.PRINTED and printed.printer_id == target.id
    assert printed.cost == D("1.2000") and printed.reason == "Find-Me: released at Colour"
    assert t.amount == D("-1.2") and t.balance_after == D("0.8")
    # Reported again (a replayed journal): nothing changes, nothing is charged again.
    again = await store.mark_job_printed(held.uuid, printer_id=target.id, cost=D("1.2"), charge=charge)
    assert again == (printed, t)
    assert await ledger_sum(store, user.personal_account_id) == D("0.8")
    assert (await store.list_jobs(printer_id=target.id))[1] == 1


@pytest_twisted.ensureDeferred
async def test_mark_job_printed_refuses_finished_jobs_and_unknown_ids(store):
    user = await store.create_user("xavi", initial_balance=D("0.1"))
    printer = await store.create_printer("P")
    held, _ = await store.record_job(job(user, printer, cost="0.5", status=JobStatus.HELD))
    with pytest.raises(NotFound):
        await store.mark_job_printed(held.uuid, printer_id=printer.id + 99, cost=D("0.5"))
    with pytest.raises(InsufficientFunds):  # guarded: the balance cannot pay
        await store.mark_job_printed(held.uuid, printer_id=printer.id, cost=D("0.5"),
                                     charge=charge_for(held), guard=True)
    assert (await store.get_job(held.uuid)).status is JobStatus.HELD
    # Unguarded (it has printed): the balance goes below zero.
    printed, t = await store.mark_job_printed(held.uuid, printer_id=printer.id, cost=D("0.5"),
                                              charge=charge_for(held))
    assert t.balance_after == D("-0.4")
    cancelled, _ = await store.record_job(job(user, printer, status=JobStatus.HELD))
    await store.update_job_status(cancelled.uuid, JobStatus.CANCELLED)
    with pytest.raises(Conflict):
        await store.mark_job_printed(cancelled.uuid, printer_id=printer.id, cost=D("0.2"))
    with pytest.raises(NotFound):
        await store.mark_job_printed(new_uuid(), printer_id=printer.id, cost=D("0.2"))
