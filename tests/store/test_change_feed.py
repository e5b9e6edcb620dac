"""The change feed: replicated rows carry an increasing sequence number; changes_since(n)
returns every row changed (inserted, updated, deleted) after n, oldest first."""

from datetime import UTC, datetime

import pytest_twisted

from pcnet.domain.model import (
    Account,
    Group,
    JobRecord,
    JobStatus,
    Printer,
    Quota,
    User,
)

from .helpers import D, charge_for, entry, job


def by_table(changes):
    out = {}
    for c in changes:
        out.setdefault(c.table, []).append(c)
    return out


@pytest_twisted.ensureDeferred
async def test_every_replicated_table_appears_in_the_feed(store):
    start = await store.last_change_seq()
    user = await store.create_user("fay", card_numbers=["F1"], initial_balance=D(3))
    group = await store.create_group("g")
    await store.add_group_member(group.id, user.id)
    shared = await store.create_shared_account("S")
    await store.grant_account_access(shared.id, user_id=user.id)
    await store.grant_account_access(shared.id, group_id=group.id)
    printer = await store.create_printer("P")
    quota = await store.create_quota(group.id, D(1), "daily",
                                     next_due_at=datetime(2030, 1, 1, tzinfo=UTC))
    held, _ = await store.record_job(job(user, printer, status=JobStatus.HELD))
    printed = job(user, printer)
    await store.record_job(printed, charge_for(printed))

    changes = await store.changes_since(start)
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > start
    assert await store.last_change_seq() == seqs[-1]
    t = by_table(changes)
    assert isinstance(t["users"][0].record, User) and t["users"][0].key == user.id
    assert t["users"][0].record.card_numbers == ("F1",)
    assert t["cards"][0].key == "F1" and t["cards"][0].record == {"card_number": "F1", "user_id": user.id}
    assert isinstance(t["groups"][0].record, Group)
    assert t["group_members"][0].key == (group.id, user.id)
    accounts = {c.key: c.record for c in t["accounts"]}
    assert isinstance(accounts[shared.id], Account)
    # The personal account appears once, at its newest state (balance after the charge).
    assert [c.key for c in t["accounts"]].count(user.personal_account_id) == 1
    assert accounts[user.personal_account_id].balance == D(3) - printed.cost
    assert t["account_user_access"][0].key == (shared.id, user.id)
    assert t["account_group_access"][0].key == (shared.id, group.id)
    assert isinstance(t["printers"][0].record, Printer) and t["printers"][0].key == printer.id
    assert isinstance(t["quotas"][0].record, Quota) and t["quotas"][0].key == quota.id
    # Held jobs are replicated (the held-job index); printed ones are not.
    assert [c.key for c in t["jobs"]] == [held.uuid]
    assert isinstance(t["jobs"][0].record, JobRecord)


@pytest_twisted.ensureDeferred
async def test_an_update_moves_a_row_past_the_readers_position(store):
    user = await store.create_user("gus")
    seen = await store.last_change_seq()
    assert await store.changes_since(seen) == []
    await store.update_user(user.id, full_name="Gus G")
    changes = await store.changes_since(seen)
    assert [(c.table, c.key) for c in changes] == [("users", user.id)]
    assert changes[0].record.full_name == "Gus G" and changes[0].seq > seen
    seen = changes[-1].seq
    # A balance change is a change of the account row.
    await store.apply_ledger_entry(entry(user.personal_account_id, "2"))
    changes = await store.changes_since(seen)
    assert [(c.table, c.key) for c in changes] == [("accounts", user.personal_account_id)]
    assert changes[0].record.balance == D(2)


@pytest_twisted.ensureDeferred
async def test_deletions_leave_tombstones(store):
    user = await store.create_user("hal", card_numbers=["H1", "H2"])
    group = await store.create_group("g")
    await store.add_group_member(group.id, user.id)
    shared = await store.create_shared_account("S")
    await store.grant_account_access(shared.id, user_id=user.id)
    await store.grant_account_access(shared.id, group_id=group.id)
    quota = await store.create_quota(group.id, D(1), "daily",
                                     next_due_at=datetime(2030, 1, 1, tzinfo=UTC))
    seen = await store.last_change_seq()
    await store.update_user(user.id, card_numbers=["H1"])
    await store.remove_group_member(group.id, user.id)
    await store.revoke_account_access(shared.id, user_id=user.id)
    await store.revoke_account_access(shared.id, group_id=group.id)
    await store.delete_quota(quota.id)
    changes = await store.changes_since(seen)
    assert [(c.table, c.key, c.record) for c in changes] == [
        ("cards", "H2", None),
        ("group_members", (group.id, user.id), None),
        ("account_user_access", (shared.id, user.id), None),
        ("account_group_access", (shared.id, group.id), None),
        ("quotas", quota.id, None),
    ]


@pytest_twisted.ensureDeferred
async def test_a_held_job_leaving_the_index_is_a_change(store):
    user = await store.create_user("ida", initial_balance=D(5))
    printer = await store.create_printer("P")
    held, _ = await store.record_job(job(user, printer, status=JobStatus.HELD))
    seen = await store.last_change_seq()
    await store.update_job_status(held.uuid, JobStatus.PRINTED, charge=charge_for(held))
    t = by_table(await store.changes_since(seen))
    assert [c.record.status for c in t["jobs"]] == [JobStatus.PRINTED]
    assert [c.key for c in t["accounts"]] == [user.personal_account_id]


@pytest_twisted.ensureDeferred
async def test_paging_through_the_feed_with_a_limit(store):
    start = await store.last_change_seq()
    for i in range(7):
        await store.create_group(f"group-{i}")
    pages, seen = [], start
    while True:
        page = await store.changes_since(seen, limit=3)
        if not page:
            break
        assert len(page) <= 3
        pages.append(page)
        seen = page[-1].seq
    names = [c.record.name for page in pages for c in page]
    assert names == [f"group-{i}" for i in range(7)] and len(pages) == 3


@pytest_twisted.ensureDeferred
async def test_feed_reads_wait_for_writes_in_flight(store):
    """Under concurrent writes, a reader that follows the feed never skips a change: every row
    it ends up with is at its final state."""
    from twisted.internet import defer

    users = [await store.create_user(f"u{i}") for i in range(8)]
    seen = await store.last_change_seq()
    final = {}
    reads = []

    async def writer(u):
        for n in range(6):
            await store.update_user(u.id, full_name=f"{u.username}-{n}")
        final[u.id] = f"{u.username}-5"

    async def reader():
        nonlocal seen
        for _ in range(12):
            changes = await store.changes_since(seen)
            reads.extend(changes)
            if changes:
                seen = changes[-1].seq

    await defer.gatherResults([defer.ensureDeferred(writer(u)) for u in users]
                              + [defer.ensureDeferred(reader())])
    reads.extend(await store.changes_since(seen))
    latest = {}
    for c in reads:
        if c.table == "users":
            latest[c.key] = c.record.full_name
    assert latest == final
