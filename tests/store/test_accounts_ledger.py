"""Shared accounts, access rights and the ledger, on both engines."""

from datetime import UTC

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcnet.domain.ledger import entry_allowed
from pcnet.domain.model import AccountKind, TransactionKind
from pcnet.errors import Conflict, InsufficientFunds, InvalidInput, NotFound

from .helpers import D, entry, ledger_sum, new_uuid


@pytest_twisted.ensureDeferred
async def test_shared_accounts(store):
    science = await store.create_shared_account("Science", comment="faculty", pin_hash="pin$1",
                                                restricted=True, overdraft=D("5"),
                                                initial_balance=D("100"))
    assert science.kind is AccountKind.SHARED and science.owner_user_id is None
    assert science.balance == D(100) and science.restricted and science.overdraft == D(5)
    assert science.pin_hash == "pin$1" and science.comment == "faculty"
    physics = await store.create_shared_account("Science/Physics", parent_id=science.id)
    assert physics.parent_id == science.id and not physics.restricted and physics.balance == 0
    assert await store.get_account(physics.id) == physics
    assert await store.get_account_by_name("Science") == science
    with pytest.raises(Conflict):
        await store.create_shared_account("Science")
    with pytest.raises(NotFound):
        await store.get_account_by_name("Nope")
    with pytest.raises(NotFound):
        await store.get_account(123456)
    with pytest.raises(NotFound):
        await store.create_shared_account("Orphan", parent_id=123456)


@pytest_twisted.ensureDeferred
async def test_personal_account_names_do_not_clash_with_shared_ones(store):
    await store.create_user("library")
    shared = await store.create_shared_account("library")
    assert await store.get_account_by_name("library") == shared


@pytest_twisted.ensureDeferred
async def test_list_accounts_by_kind_with_totals(store):
    await store.create_user("ursula")
    await store.create_shared_account("B-shared")
    await store.create_shared_account("A-shared")
    accounts, total = await store.list_accounts()
    assert total == 3 and [a.name for a in accounts] == ["A-shared", "B-shared", "ursula"]
    shared, total = await store.list_accounts(kind=AccountKind.SHARED)
    assert total == 2 and [a.name for a in shared] == ["A-shared", "B-shared"]
    personal, total = await store.list_accounts(kind="personal")
    assert total == 1 and personal[0].name == "ursula"
    page, total = await store.list_accounts(offset=1, limit=1)
    assert total == 3 and [a.name for a in page] == ["B-shared"]


@pytest_twisted.ensureDeferred
async def test_update_account(store):
    parent = await store.create_shared_account("Parent")
    child = await store.create_shared_account("Child")
    updated = await store.update_account(child.id, name="Parent/Child", restricted=True,
                                         overdraft=D("2.5"), pin_hash="p", parent_id=parent.id,
                                         disabled=True, comment="c")
    assert updated.name == "Parent/Child" and updated.restricted and updated.overdraft == D("2.5")
    assert updated.pin_hash == "p" and updated.parent_id == parent.id and updated.disabled
    assert updated.comment == "c"
    assert await store.get_account(child.id) == updated
    with pytest.raises(Conflict):
        await store.update_account(child.id, name="Parent")
    with pytest.raises(InvalidInput):
        await store.update_account(parent.id, parent_id=child.id)  # a cycle
    with pytest.raises(InvalidInput):
        await store.update_account(child.id, parent_id=child.id)
    with pytest.raises(InvalidInput):
        await store.update_account(child.id, balance=D(100))  # only through the ledger
    with pytest.raises(NotFound):
        await store.update_account(999999, comment="x")
    cleared = await store.update_account(child.id, parent_id=None, pin_hash=None)
    assert cleared.parent_id is None and cleared.pin_hash is None


@pytest_twisted.ensureDeferred
async def test_account_access_for_users_and_groups(store):
    owner = await store.create_user("owner")
    direct = await store.create_user("direct")
    member = await store.create_user("member")
    stranger = await store.create_user("stranger")
    group = await store.create_group("project")
    await store.add_group_member(group.id, member.id)
    shared = await store.create_shared_account("Project X")

    assert await store.user_can_use_account(owner.id, owner.personal_account_id)
    assert not await store.user_can_use_account(stranger.id, owner.personal_account_id)
    assert not await store.user_can_use_account(direct.id, shared.id)

    await store.grant_account_access(shared.id, user_id=direct.id)
    await store.grant_account_access(shared.id, user_id=direct.id)  # idempotent
    await store.grant_account_access(shared.id, group_id=group.id)
    assert await store.account_access(shared.id) == {"users": [direct.id], "groups": [group.id]}
    assert await store.user_can_use_account(direct.id, shared.id)
    assert await store.user_can_use_account(member.id, shared.id)
    assert not await store.user_can_use_account(stranger.id, shared.id)
    assert not await store.user_can_use_account(direct.id, 999999)

    await store.revoke_account_access(shared.id, group_id=group.id)
    await store.revoke_account_access(shared.id, group_id=group.id)  # idempotent
    assert not await store.user_can_use_account(member.id, shared.id)
    await store.revoke_account_access(shared.id, user_id=direct.id)
    assert await store.account_access(shared.id) == {"users": [], "groups": []}

    with pytest.raises(InvalidInput):
        await store.grant_account_access(shared.id)
    with pytest.raises(InvalidInput):
        await store.grant_account_access(shared.id, user_id=direct.id, group_id=group.id)
    with pytest.raises(InvalidInput):
        await store.grant_account_access(owner.personal_account_id, user_id=direct.id)
    with pytest.raises(NotFound):
        await store.grant_account_access(999999, user_id=direct.id)
    with pytest.raises(NotFound):
        await store.grant_account_access(shared.id, user_id=999999)
    with pytest.raises(NotFound):
        await store.account_access(999999)


# --- the ledger -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_ledger_entry_moves_the_balance_and_records_balance_after(store):
    user = await store.create_user("lena", initial_balance=D("10"))
    account_id = user.personal_account_id
    e = entry(account_id, "-2.3456", reference="job-1", comment="a job", origin="site-a")
    t = await store.apply_ledger_entry(e)
    assert t.uuid == e.uuid and t.account_id == account_id and t.amount == D("-2.3456")
    assert t.balance_after == D("7.6544") and t.kind is TransactionKind.CHARGE
    assert t.reference == "job-1" and t.comment == "a job" and t.origin == "site-a"
    assert t.created_at.tzinfo is not None
    assert (await store.get_account(account_id)).balance == D("7.6544")
    assert await ledger_sum(store, account_id) == D("7.6544")


@pytest_twisted.ensureDeferred
async def test_a_repeated_uuid_is_a_no_op_returning_the_stored_row(store):
    user = await store.create_user("max", initial_balance=D("5"))
    e = entry(user.personal_account_id, "-1")
    first = await store.apply_ledger_entry(e)
    again = await store.apply_ledger_entry(e)
    assert again == first
    # Even with different contents, and even if the guard would refuse it now.
    changed = entry(user.personal_account_id, "-100", uuid=e.uuid)
    assert await store.apply_ledger_entry(changed, guard=True) == first
    assert (await store.get_account(user.personal_account_id)).balance == D(4)
    assert (await store.list_transactions(user.personal_account_id))[1] == 2


@pytest_twisted.ensureDeferred
async def test_guard_refuses_a_restricted_account_below_its_overdraft(store):
    user = await store.create_user("nina", initial_balance=D("1"), overdraft=D("0.5"))
    account_id = user.personal_account_id
    await store.apply_ledger_entry(entry(account_id, "-1.5"), guard=True)  # exactly -overdraft
    refused = entry(account_id, "-0.0001")
    with pytest.raises(InsufficientFunds) as e:
        await store.apply_ledger_entry(refused, guard=True)
    assert e.value.code == "insufficient_funds"
    assert f"account {account_id}" in e.value.message and "-0.5000" in e.value.message
    assert (await store.get_account(account_id)).balance == D("-0.5")
    with pytest.raises(NotFound):
        await store.list_transactions(999999)
    txns, total = await store.list_transactions(account_id)
    assert total == 2 and refused.uuid not in [t.uuid for t in txns]
    # Credits and free entries always pass; guard=False lets a charge through.
    await store.apply_ledger_entry(entry(account_id, "0"), guard=True)
    await store.apply_ledger_entry(entry(account_id, "-10", kind=TransactionKind.ADJUST))
    assert (await store.get_account(account_id)).balance == D("-10.5")
    await store.apply_ledger_entry(entry(account_id, "0.25", kind=TransactionKind.REFUND), guard=True)
    assert (await store.get_account(account_id)).balance == D("-10.25")
    assert await ledger_sum(store, account_id) == D("-10.25")


@pytest_twisted.ensureDeferred
async def test_guard_ignores_unrestricted_accounts(store):
    shared = await store.create_shared_account("Open", restricted=False)
    t = await store.apply_ledger_entry(entry(shared.id, "-1000"), guard=True)
    assert t.balance_after == D(-1000)


@pytest_twisted.ensureDeferred
async def test_ledger_entry_for_a_missing_account(store):
    with pytest.raises(NotFound):
        await store.apply_ledger_entry(entry(987654, "1"))


@pytest_twisted.ensureDeferred
async def test_set_balance_records_the_delta_inside_the_transaction(store):
    user = await store.create_user("olga", initial_balance=D("3.25"))
    account_id = user.personal_account_id
    key = new_uuid()
    t = await store.set_balance(account_id, D("10"), uuid=key, comment="term start", origin="admin")
    assert t.kind is TransactionKind.SET and t.amount == D("6.75") and t.balance_after == D(10)
    assert t.comment == "term start" and t.origin == "admin"
    assert await store.set_balance(account_id, D("99"), uuid=key) == t  # idempotent on uuid
    t2 = await store.set_balance(account_id, D("-2"), uuid=new_uuid())
    assert t2.amount == D(-12) and t2.balance_after == D(-2)
    assert (await store.get_account(account_id)).balance == D(-2)
    assert await ledger_sum(store, account_id) == D(-2)
    with pytest.raises(NotFound):
        await store.set_balance(999999, D(1), uuid=new_uuid())


@pytest_twisted.ensureDeferred
async def test_list_transactions_newest_first_with_paging(store):
    from datetime import datetime, timedelta

    user = await store.create_user("pia")
    account_id = user.personal_account_id
    base = datetime(2030, 1, 1, tzinfo=UTC)
    for i in range(5):
        await store.apply_ledger_entry(entry(account_id, str(i + 1), kind=TransactionKind.ADJUST,
                                             created_at=base + timedelta(minutes=i)))
    txns, total = await store.list_transactions(account_id)
    assert total == 5 and [t.amount for t in txns] == [D(5), D(4), D(3), D(2), D(1)]
    page, total = await store.list_transactions(account_id, offset=1, limit=2)
    assert total == 5 and [t.amount for t in page] == [D(4), D(3)]
    assert [t.balance_after for t in reversed(txns)] == [D(1), D(3), D(6), D(10), D(15)]


@pytest_twisted.ensureDeferred
async def test_the_guard_matches_the_domain_rule(store):
    """The engine's guard (Python on SQLite, PL/pgSQL on PostgreSQL) agrees with
    pcnet.domain.ledger.entry_allowed on generated cases, boundaries included."""
    user = await store.create_user("quinn", initial_balance=D(0))
    account_id = user.personal_account_id
    amounts = st.decimals(min_value=-50, max_value=50, places=4)
    cases = []

    @settings(max_examples=40 if store.engine == "sqlite" else 20, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(balance=amounts, overdraft=st.decimals(min_value=0, max_value=20, places=4),
           restricted=st.booleans(), amount=amounts)
    def collect(balance, overdraft, restricted, amount):
        cases.append((balance, overdraft, restricted, amount))

    collect()
    cases += [(D(1), D(0), True, D(-1)), (D(1), D(0), True, D("-1.0001")), (D(-5), D(0), True, D(0)),
              (D(-5), D(1), True, D("0.0001")), (D(0), D(2), True, D(-2)), (D(0), D(2), True, D("-2.0001"))]
    for balance, overdraft, restricted, amount in cases:
        await store.set_balance(account_id, balance, uuid=new_uuid())
        await store.update_account(account_id, restricted=restricted, overdraft=overdraft)
        expected = entry_allowed(balance, amount, restricted=restricted, overdraft=overdraft)
        try:
            await store.apply_ledger_entry(entry(account_id, amount), guard=True)
            allowed = True
        except InsufficientFunds:
            allowed = False
        assert allowed == expected, (balance, overdraft, restricted, amount)
        assert (await store.get_account(account_id)).balance == (balance + amount if allowed else balance)
    assert await ledger_sum(store, account_id) == (await store.get_account(account_id)).balance
