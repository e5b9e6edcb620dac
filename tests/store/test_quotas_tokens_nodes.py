"""Quota schedules, API tokens and pcnet/1 nodes (enrolment with invitations), on both engines."""

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


FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
PAST = datetime(2000, 1, 1, tzinfo=UTC)


async def _status(store, *args, **kw):
    return (await store.node_hello(*args, **kw)).status


@pytest_twisted.ensureDeferred
async def test_unknown_names_without_a_valid_code_leave_no_rows(store):
    """The squatting finding: hellos from anyone used to create pending rows."""
    for i in range(40):
        assert await _status(store, "provider", f"n{i}", f"d{i}", "203.0.113.9") == "rejected"
    assert await _status(store, "provider", "print01", "d", "", code_hash="wrong") == "rejected"
    assert await store.list_nodes() == []


@pytest_twisted.ensureDeferred
async def test_an_invitation_enrols_once_and_pins_the_credential(store):
    inv = await store.create_node_invitation("print01", "provider", "code-1", FUTURE, approve=True)
    assert (inv.name, inv.role, inv.approve, inv.expires_at) == ("print01", "provider", True, FUTURE)
    assert inv.created_at is not None and "code-1" not in repr(inv)
    verdict = await store.node_hello("provider", "print01", "digest-1", "10.0.0.5", code_hash="code-1")
    assert verdict.status == "approved" and verdict.pin and verdict.spend_invitation
    node = await store.get_node("print01")
    assert (node.role, node.status, node.address, node.credential_hash) == (
        "provider", "approved", "10.0.0.5", "digest-1")
    assert node.created_at is not None and node.approved_at is not None
    assert "digest-1" not in repr(node) and "credential_hash" not in node.public()
    assert await store.list_node_invitations() == []

    # The code is spent; the name answers to its credential only; the address follows the node.
    assert await _status(store, "provider", "print01", "digest-2", "10.6.6.6", code_hash="code-1") == "rejected"
    assert await _status(store, "site", "print01", "digest-1", "10.6.6.6") == "rejected"
    assert (await store.get_node("print01")).address == "10.0.0.5"
    assert await _status(store, "provider", "print01", "digest-1", "10.0.0.6", code_hash="code-1") == "approved"
    assert (await store.get_node("print01")).address == "10.0.0.6"
    # A new code presented by the node itself (it kept its credential) is spent all the same.
    await store.create_node_invitation("print01", "provider", "code-2", FUTURE, approve=True)
    verdict = await store.node_hello("provider", "print01", "digest-1", code_hash="code-2")
    assert verdict.status == "approved" and verdict.spend_invitation and not verdict.pin
    assert await store.list_node_invitations() == []

    rejected = await store.set_node_status("print01", "rejected")
    assert rejected.status == "rejected" and rejected.approved_at == node.approved_at
    assert await _status(store, "provider", "print01", "digest-1") == "rejected"


@pytest_twisted.ensureDeferred
async def test_a_code_needs_its_name_its_role_and_time(store):
    await store.create_node_invitation("p1", "provider", "c1", FUTURE, approve=True)
    await store.create_node_invitation("old", "provider", "c2", PAST, approve=True)
    assert await _status(store, "provider", "p2", "d", code_hash="c1") == "rejected"
    assert await _status(store, "site", "p1", "d", code_hash="c1") == "rejected"
    verdict = await store.node_hello("provider", "old", "d", code_hash="c2")
    assert verdict.status == "rejected" and "expired" in verdict.reason
    assert await store.list_nodes() == []
    assert [i.name for i in await store.list_node_invitations()] == ["old", "p1"]


@pytest_twisted.ensureDeferred
async def test_a_site_enrolled_with_a_code_may_wait_for_approval(store):
    await store.create_node_invitation("site-a", "site", b"\x01\x02", FUTURE, approve=False)
    # Digests may be bytes (stored as hex).
    assert await _status(store, "site", "site-a", b"\x0a", code_hash="0102") == "pending"
    site = await store.get_node("site-a")
    assert site.credential_hash == "0a" and site.status == "pending" and site.approved_at is None
    assert await _status(store, "site", "site-a", b"\x0a") == "pending"
    approved = await store.set_node_status("site-a", "approved")
    assert approved.status == "approved" and approved.approved_at is not None
    assert await _status(store, "site", "site-a", b"\x0a") == "approved"


@pytest_twisted.ensureDeferred
async def test_auto_approve_enrols_new_names_and_approves_pending_ones(store):
    assert await _status(store, "provider", "lan-1", "d", "10.1.0.1", auto_approve=True) == "approved"
    assert (await store.get_node("lan-1")).approved_at is not None
    await store.create_node_invitation("s", "site", "c", FUTURE, approve=False)
    assert await _status(store, "site", "s", "d", code_hash="c") == "pending"
    assert await _status(store, "site", "s", "d", auto_approve=True) == "approved"
    # The network is no licence to take a known name with another credential.
    assert await _status(store, "provider", "lan-1", "other", auto_approve=True) == "rejected"


@pytest_twisted.ensureDeferred
async def test_reinviting_a_known_name_re_enrols_it_with_a_new_credential(store):
    await store.node_hello("provider", "p1", "old", auto_approve=True)
    inv = await store.create_node_invitation("p1", "provider", "c1", FUTURE, approve=True)
    again = await store.create_node_invitation("p1", "provider", "c2", FUTURE, approve=False)
    assert again.created_at >= inv.created_at and not again.approve
    assert [i.name for i in await store.list_node_invitations()] == ["p1"]
    assert await _status(store, "provider", "p1", "new", code_hash="c1") == "rejected"  # replaced
    verdict = await store.node_hello("provider", "p1", "new", code_hash="c2")
    assert verdict.status == "pending" and "re-enrolled" in verdict.reason
    assert (await store.get_node("p1")).approved_at is None
    assert await _status(store, "provider", "p1", "old") == "rejected"
    with pytest.raises(Conflict):
        await store.create_node_invitation("p1", "site", "c3", FUTURE, approve=True)


@pytest_twisted.ensureDeferred
async def test_deleting_a_node_frees_its_name(store):
    await store.node_hello("provider", "p1", "d", auto_approve=True)
    await store.delete_node("p1")
    assert await store.list_nodes() == []
    assert await _status(store, "provider", "p1", "d") == "rejected"
    await store.create_node_invitation("p1", "site", "c", FUTURE, approve=True)
    assert await _status(store, "site", "p1", "d2", code_hash="c") == "approved"
    await store.create_node_invitation("x", "device", "c", FUTURE, approve=True)
    await store.delete_node_invitation("x")
    with pytest.raises(NotFound):
        await store.delete_node_invitation("x")
    with pytest.raises(NotFound):
        await store.delete_node("nope")


@pytest_twisted.ensureDeferred
async def test_two_hellos_with_one_code_enrol_one_node(store):
    from twisted.internet import defer

    await store.create_node_invitation("p1", "provider", "c", FUTURE, approve=True)
    verdicts = await defer.gatherResults(
        [store.node_hello("provider", "p1", f"d{i}", code_hash="c") for i in range(6)])
    assert sorted(v.status for v in verdicts) == ["approved"] + ["rejected"] * 5
    (winner,) = [i for i, v in enumerate(verdicts) if v.status == "approved"]
    assert (await store.get_node("p1")).credential_hash == f"d{winner}"


@pytest_twisted.ensureDeferred
async def test_node_bad_arguments(store):
    with pytest.raises(NotFound):
        await store.get_node("nope")
    with pytest.raises(NotFound):
        await store.set_node_status("nope", "approved")
    await store.node_hello("provider", "p", "d", auto_approve=True)
    with pytest.raises(InvalidInput):
        await store.set_node_status("p", "maybe")
    with pytest.raises(InvalidInput):
        await store.node_hello("printer", "x", "d", auto_approve=True)
    with pytest.raises(InvalidInput):
        await store.create_node_invitation("x", "printer", "c", FUTURE, approve=True)


@pytest_twisted.ensureDeferred
async def test_node_status_accepts_the_registry_enum(store):
    from pcnet.net.registry import NodeStatus

    await store.node_hello("device", "mfd-1", "d", auto_approve=True)
    node = await store.set_node_status("mfd-1", NodeStatus.PENDING)
    assert NodeStatus(node.status) is NodeStatus.PENDING
    node = await store.set_node_status("mfd-1", NodeStatus.APPROVED)
    assert NodeStatus(node.status) is NodeStatus.APPROVED
