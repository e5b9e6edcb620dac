"""Quota schedules, API tokens and pcnet/1 nodes, on both engines."""

from datetime import UTC, datetime, timedelta

import pytest
import pytest_twisted

from pcnet.domain.model import QuotaPeriod
from pcnet.errors import Conflict, InvalidInput, NotFound

from .helpers import D

T0 = datetime(2030, 9, 1, 6, 0, tzinfo=UTC)


@pytest_twisted.ensureDeferred
async def test_quota_schedule_life_cycle(store):
    staff = await store.create_group("staff")
    students = await store.create_group("students")
    weekly = await store.create_quota(staff.id, D("5.00"), QuotaPeriod.WEEKLY, cap=D("20"),
                                      next_due_at=T0)
    assert weekly.group_id == staff.id and weekly.amount == D(5) and weekly.cap == D(20)
    assert weekly.period is QuotaPeriod.WEEKLY and weekly.next_due_at == T0
    assert weekly.last_applied_at is None
    daily = await store.create_quota(students.id, D("0.5"), "daily", next_due_at=T0 + timedelta(hours=1))
    assert daily.cap is None
    assert await store.list_quotas() == [weekly, daily]

    assert await store.due_quotas(T0 - timedelta(microseconds=1)) == []
    assert await store.due_quotas(T0) == [weekly]
    assert [q.id for q in await store.due_quotas(T0 + timedelta(days=1))] == [weekly.id, daily.id]

    applied = await store.mark_quota_applied(weekly.id, T0 + timedelta(seconds=3), T0 + timedelta(days=7))
    assert applied.last_applied_at == T0 + timedelta(seconds=3)
    assert applied.next_due_at == T0 + timedelta(days=7)
    assert await store.due_quotas(T0 + timedelta(days=1)) == [daily]

    changed = await store.update_quota(daily.id, amount=D("1.25"), period=QuotaPeriod.MONTHLY,
                                       cap=D("3"), next_due_at=T0 + timedelta(days=30))
    assert changed.amount == D("1.25") and changed.period is QuotaPeriod.MONTHLY
    assert changed.cap == D(3) and changed.next_due_at == T0 + timedelta(days=30)
    assert (await store.update_quota(daily.id, cap=None)).cap is None

    await store.delete_quota(weekly.id)
    assert [q.id for q in await store.list_quotas()] == [daily.id]
    with pytest.raises(NotFound):
        await store.delete_quota(weekly.id)
    with pytest.raises(NotFound):
        await store.update_quota(weekly.id, amount=D(1))
    with pytest.raises(NotFound):
        await store.mark_quota_applied(weekly.id, T0, T0)
    with pytest.raises(NotFound):
        await store.create_quota(99999, D(1), "daily", next_due_at=T0)
    with pytest.raises(InvalidInput):
        await store.create_quota(staff.id, D(1), "hourly", next_due_at=T0)
    with pytest.raises(InvalidInput):
        await store.update_quota(daily.id, group_id=staff.id)


@pytest_twisted.ensureDeferred
async def test_api_tokens_store_hashes_and_record_last_use(store):
    user = await store.create_user("admin", admin=True)
    token = await store.create_api_token("backup script", "sha256:aaaa", user_id=user.id)
    assert token.name == "backup script" and token.user_id == user.id
    assert token.created_at is not None and token.last_used_at is None
    other = await store.create_api_token("monitoring", "sha256:bbbb")
    assert other.user_id is None
    with pytest.raises(Conflict):
        await store.create_api_token("again", "sha256:aaaa")
    with pytest.raises(NotFound):
        await store.create_api_token("ghost", "sha256:cccc", user_id=99999)

    found = await store.find_api_token("sha256:aaaa")
    assert found.id == token.id and found.last_used_at is not None
    assert await store.find_api_token("sha256:nope") is None
    listed = await store.list_api_tokens()
    assert [t.id for t in listed] == [token.id, other.id]
    assert listed[0].last_used_at == found.last_used_at
    assert not hasattr(listed[0], "token_hash")

    await store.revoke_api_token(token.id)
    assert await store.find_api_token("sha256:aaaa") is None
    with pytest.raises(NotFound):
        await store.revoke_api_token(token.id)


@pytest_twisted.ensureDeferred
async def test_node_registration_is_trust_on_first_use(store):
    status = await store.register_node("provider", "print01", "digest-1", "10.0.0.5")
    assert status == "pending"
    node = await store.get_node("print01")
    assert node.role == "provider" and node.status == "pending" and node.address == "10.0.0.5"
    assert node.credential_hash == "digest-1" and node.created_at is not None
    assert node.approved_at is None
    assert "digest-1" not in repr(node) and "credential_hash" not in node.public()

    # Same credential: the stored status, and the address follows the node.
    assert await store.register_node("provider", "print01", "digest-1", "10.0.0.6") == "pending"
    assert (await store.get_node("print01")).address == "10.0.0.6"
    # Anyone else claiming the name is turned away and changes nothing.
    assert await store.register_node("provider", "print01", "digest-2", "10.6.6.6") == "rejected"
    assert await store.register_node("site", "print01", "digest-1", "10.6.6.6") == "rejected"
    assert (await store.get_node("print01")).address == "10.0.0.6"

    approved = await store.set_node_status("print01", "approved")
    assert approved.status == "approved" and approved.approved_at is not None
    assert await store.register_node("provider", "print01", "digest-1", "") == "approved"
    rejected = await store.set_node_status("print01", "rejected")
    assert rejected.status == "rejected" and rejected.approved_at == approved.approved_at

    # A node from an auto-approved network comes in approved; digests may be bytes.
    assert await store.register_node("site", "site-a", b"\x01\x02", "10.1.0.1", status="approved") == "approved"
    site = await store.get_node("site-a")
    assert site.credential_hash == "0102" and site.approved_at is not None
    assert await store.register_node("site", "site-a", b"\x01\x02") == "approved"
    assert [n.name for n in await store.list_nodes()] == ["print01", "site-a"]

    with pytest.raises(NotFound):
        await store.get_node("nope")
    with pytest.raises(NotFound):
        await store.set_node_status("nope", "approved")
    with pytest.raises(InvalidInput):
        await store.set_node_status("print01", "maybe")
    with pytest.raises(InvalidInput):
        await store.register_node("provider", "x", "d", status="maybe")


@pytest_twisted.ensureDeferred
async def test_node_status_accepts_the_registry_enum(store):
    from pcnet.net.registry import NodeStatus

    await store.register_node("device", "mfd-1", "d", status=NodeStatus.PENDING)
    node = await store.set_node_status("mfd-1", NodeStatus.APPROVED)
    assert NodeStatus(node.status) is NodeStatus.APPROVED
