"""The store's audit log, the Site Server's offline policy, and what the job log keeps about a
held job's release and cancellation, on both engines."""

from datetime import timedelta

import pytest
import pytest_twisted

from pcnet.domain.model import (
    AuditEntry,
    JobStatus,
    OfflineAccountSelection,
    SiteOfflinePolicy,
    UnknownUsers,
)
from pcnet.errors import Conflict, InvalidInput, NotFound

from .helpers import D, job


def entry_for(action, kind, object_id="", **kw):
    return AuditEntry(action=action, object_kind=kind, object_id=str(object_id),
                      actor=kw.pop("actor", "cli:root"), **kw)


@pytest_twisted.ensureDeferred
async def test_an_audited_write_records_its_row_in_the_same_transaction(store):
    made = []

    def audit(user):
        made.append(user)
        return entry_for("user.create", "user", user.id, object_name=user.username,
                         after={"username": user.username}, detail="pcnet import-users x.csv")

    user = await store.create_user("ann", audit=audit)
    assert made == [user]
    rows, total = await store.list_audit()
    assert total == 1
    row = rows[0]
    assert (row.action, row.object_kind, row.object_id, row.object_name) == (
        "user.create", "user", str(user.id), "ann")
    assert row.after == {"username": "ann"} and row.before is None
    assert row.actor == "cli:root" and row.detail == "pcnet import-users x.csv"
    assert row.id is not None and row.at is not None


@pytest_twisted.ensureDeferred
async def test_a_refused_write_leaves_no_audit_row_and_a_failing_audit_undoes_the_write(store):
    await store.create_user("ann")
    with pytest.raises(Conflict):
        await store.create_user("ann", audit=entry_for("user.create", "user"))
    assert (await store.list_audit())[1] == 0

    def broken(group):
        raise RuntimeError("the audit row cannot be made")

    with pytest.raises(RuntimeError):
        await store.create_group("staff", audit=broken)
    with pytest.raises(NotFound):
        await store.get_group_by_name("staff")   # rolled back with its audit row


@pytest_twisted.ensureDeferred
async def test_audit_rows_page_newest_first_and_filter_by_actor_object_and_time(store):
    ann = await store.create_user("ann")
    await store.update_user(ann.id, full_name="Ann", audit=entry_for("user.update", "user", ann.id,
                                                                     actor="token:3"))
    await store.create_group("staff", audit=entry_for("group.create", "group", 1, actor="user:bob"))
    await store.update_user(ann.id, office="B2", audit=entry_for("user.update", "user", ann.id,
                                                                 actor="token:30"))
    rows, total = await store.list_audit()
    assert total == 3 and [r.actor for r in rows] == ["token:30", "user:bob", "token:3"]
    assert [r.actor for r in (await store.list_audit(actor="token:3"))[0]] == ["token:3"]
    assert [r.actor for r in (await store.list_audit(actor_kind="token"))[0]] == ["token:30", "token:3"]
    by_object = (await store.list_audit(object_kind="user", object_id=ann.id))[0]
    assert [r.action for r in by_object] == ["user.update", "user.update"]
    assert [r.action for r in (await store.list_audit(action="group.create"))[0]] == ["group.create"]
    page, total = await store.list_audit(offset=1, limit=1)
    assert total == 3 and [r.actor for r in page] == ["user:bob"]
    first = rows[-1].at
    assert (await store.list_audit(since=first + timedelta(days=1)))[1] == 0
    assert (await store.list_audit(until=first))[1] == 0
    assert (await store.list_audit(since=first, until=first + timedelta(seconds=1)))[1] == 3


@pytest_twisted.ensureDeferred
async def test_an_actor_kind_filter_is_not_a_pattern(store):
    await store.create_group("a", audit=entry_for("group.create", "group", actor="token:1"))
    await store.create_group("b", audit=entry_for("group.create", "group", actor="t_ken:1"))
    assert (await store.list_audit(actor_kind="t_ken"))[1] == 1
    assert (await store.list_audit(actor_kind="%"))[1] == 0


@pytest_twisted.ensureDeferred
async def test_the_offline_policy_starts_at_its_defaults_and_is_replaced_whole(store):
    policy = await store.get_offline_policy()
    assert policy == SiteOfflinePolicy()
    user = await store.create_user("matched-later")
    shared = await store.create_shared_account("Offline Account")
    wanted = SiteOfflinePolicy(
        account_selection=OfflineAccountSelection.OFFLINE_ACCOUNT, offline_account_id=shared.id,
        restricted_credit=D("2.5"), unknown_users=UnknownUsers.CHARGE_USER,
        unknown_user_id=user.id, password_auth_offline=False)
    stored = await store.set_offline_policy(wanted)
    assert stored.updated_at is not None
    assert stored == SiteOfflinePolicy(**{**wanted.__dict__, "updated_at": stored.updated_at})
    assert await store.get_offline_policy() == stored


@pytest_twisted.ensureDeferred
async def test_the_offline_policy_refuses_ids_that_are_not_what_it_needs(store):
    ann = await store.create_user("ann")
    with pytest.raises(InvalidInput) as e:
        await store.set_offline_policy(SiteOfflinePolicy(offline_account_id=ann.personal_account_id))
    assert e.value.field == "offline_account"
    with pytest.raises(NotFound):
        await store.set_offline_policy(SiteOfflinePolicy(offline_account_id=999_999))
    with pytest.raises(NotFound):
        await store.set_offline_policy(SiteOfflinePolicy(unknown_user_id=999_999))
    assert await store.get_offline_policy() == SiteOfflinePolicy()


@pytest_twisted.ensureDeferred
async def test_the_offline_policy_is_in_the_change_feed(store):
    start = await store.last_change_seq()
    await store.set_offline_policy(SiteOfflinePolicy(restricted_credit=D(1)))
    changes = [c for c in await store.changes_since(start) if c.table == "offline_policy"]
    assert len(changes) == 1 and changes[0].key == 1
    assert changes[0].record.restricted_credit == D(1)
    snapshot = [c for c in await store.changes_since(0) if c.table == "offline_policy"]
    assert len(snapshot) == 1


@pytest_twisted.ensureDeferred
async def test_the_job_log_keeps_who_released_and_who_cancelled_a_held_job(store):
    user = await store.create_user("ann", initial_balance=D(5))
    printer = await store.create_printer("P")
    held, _ = await store.record_job(job(user, printer, status=JobStatus.HELD))
    released, _ = await store.update_job_status(held.uuid, JobStatus.RELEASED, reason="released",
                                                by="token:3")
    assert released.released_by == "token:3" and released.cancelled_by == ""
    printed, _ = await store.mark_job_printed(held.uuid, printer_id=printer.id, cost=D("0.2"),
                                              reason="released")
    assert printed.status is JobStatus.PRINTED and printed.released_by == "token:3"

    other, _ = await store.record_job(job(user, printer, status=JobStatus.HELD))
    back, _ = await store.update_job_status(other.uuid, JobStatus.RELEASED, by="user:ann")
    back, _ = await store.update_job_status(other.uuid, JobStatus.HELD, by="user:ann")
    assert back.released_by == ""    # back on hold: it was not released after all
    cancelled, _ = await store.update_job_status(other.uuid, JobStatus.CANCELLED, by="cli:root")
    assert cancelled.cancelled_by == "cli:root"
    assert (await store.get_job(other.uuid)).cancelled_by == "cli:root"


@pytest_twisted.ensureDeferred
async def test_a_job_is_found_by_its_integer_id_and_read_back_with_its_printer_name(store):
    user = await store.create_user("ann")
    printer = await store.create_printer("lib-colour")
    stored, _ = await store.record_job(job(user, printer, status=JobStatus.DENIED))
    by_id = await store.get_job_by_id(stored.id)
    assert by_id == stored and by_id.printer_name == "lib-colour"
    await store.update_printer(printer.id, name="lib-colour-2")
    assert (await store.get_job(stored.uuid)).printer_name == "lib-colour-2"
    [listed], _ = await store.list_jobs()
    assert listed.printer_name == "lib-colour-2"
    with pytest.raises(NotFound):
        await store.get_job_by_id(stored.id + 1000)


@pytest_twisted.ensureDeferred
async def test_a_printer_can_be_created_disabled(store):
    printer = await store.create_printer("P", disabled=True)
    assert printer.disabled and (await store.get_printer(printer.id)).disabled

