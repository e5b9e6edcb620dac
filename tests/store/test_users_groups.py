"""Users, cards and groups, on both engines."""

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from pcnet.domain.model import AccountKind, TransactionKind
from pcnet.errors import Conflict, InvalidInput, NotFound
from pcnet.interfaces import IStore

from .helpers import D


@pytest_twisted.ensureDeferred
async def test_store_provides_istore(store, engine):
    assert verifyObject(IStore, store)
    assert store.engine == engine


@pytest_twisted.ensureDeferred
async def test_create_user_makes_a_personal_account_with_initial_transaction(store):
    user = await store.create_user(
        "alice", full_name="Alice Liddell", email="alice@example.org", department="Maths",
        office="B12", card_numbers=["1234", "5678"], password_hash="pbkdf2$x", pin_hash="pbkdf2$y",
        admin=True, initial_balance=D("12.5"), restricted=False, overdraft=D("3"))
    assert user.username == "alice" and user.full_name == "Alice Liddell"
    assert user.email == "alice@example.org" and user.department == "Maths" and user.office == "B12"
    assert user.card_numbers == ("1234", "5678")
    assert user.password_hash == "pbkdf2$x" and user.pin_hash == "pbkdf2$y"
    assert user.admin and not user.disabled
    assert user.created_at is not None and user.created_at.tzinfo is not None
    account = await store.get_account(user.personal_account_id)
    assert account.kind is AccountKind.PERSONAL and account.owner_user_id == user.id
    assert account.name == "alice"
    assert account.balance == D("12.5000") and not account.restricted and account.overdraft == D(3)
    txns, total = await store.list_transactions(account.id)
    assert total == 1 and txns[0].kind is TransactionKind.INITIAL and txns[0].amount == D("12.5")
    assert txns[0].balance_after == D("12.5")


@pytest_twisted.ensureDeferred
async def test_user_defaults_restricted_no_balance_no_transaction(store):
    user = await store.create_user("bob")
    account = await store.get_account(user.personal_account_id)
    assert account.restricted and account.balance == 0 and account.overdraft == 0
    assert (await store.list_transactions(account.id))[1] == 0
    assert user.card_numbers == () and user.password_hash is None and not user.admin


@pytest_twisted.ensureDeferred
async def test_get_user_by_id_name_and_card(store):
    user = await store.create_user("carol", card_numbers=["C-1"])
    assert await store.get_user(user.id) == user
    assert await store.get_user_by_name("carol") == user
    assert await store.find_user_by_card("C-1") == user
    assert await store.find_user_by_card("nope") is None
    with pytest.raises(NotFound):
        await store.get_user(999999)
    with pytest.raises(NotFound):
        await store.get_user_by_name("nobody")


@pytest_twisted.ensureDeferred
async def test_duplicate_username_is_a_conflict_and_writes_nothing(store):
    await store.create_user("dave")
    with pytest.raises(Conflict):
        await store.create_user("dave", card_numbers=["D-9"])
    assert await store.find_user_by_card("D-9") is None
    assert (await store.list_users())[1] == 1


@pytest_twisted.ensureDeferred
async def test_a_card_number_belongs_to_one_user(store):
    await store.create_user("erin", card_numbers=["777"])
    with pytest.raises(Conflict) as e:
        await store.create_user("frank", card_numbers=["777"])
    assert "777" not in e.value.message
    frank = await store.create_user("frank")
    with pytest.raises(Conflict):
        await store.update_user(frank.id, card_numbers=["888", "777"])
    assert (await store.get_user(frank.id)).card_numbers == ()


@pytest_twisted.ensureDeferred
async def test_update_user_fields_and_cards(store):
    user = await store.create_user("gina", card_numbers=["1", "2"])
    updated = await store.update_user(user.id, full_name="Gina G", email="g@x", department="D",
                                      office="O", card_numbers=["3", "1"], password_hash="h",
                                      pin_hash="p", disabled=True, admin=True)
    assert updated.full_name == "Gina G" and updated.email == "g@x"
    assert updated.department == "D" and updated.office == "O"
    assert updated.card_numbers == ("3", "1")
    assert updated.password_hash == "h" and updated.pin_hash == "p"
    assert updated.disabled and updated.admin
    assert await store.get_user(user.id) == updated
    assert await store.find_user_by_card("2") is None
    assert (await store.find_user_by_card("3")).id == user.id
    cleared = await store.update_user(user.id, card_numbers=[], password_hash=None)
    assert cleared.card_numbers == () and cleared.password_hash is None


@pytest_twisted.ensureDeferred
async def test_update_user_refuses_unknown_fields_and_missing_users(store):
    user = await store.create_user("hank")
    with pytest.raises(InvalidInput):
        await store.update_user(user.id, username="other")
    with pytest.raises(NotFound):
        await store.update_user(424242, full_name="x")


@pytest_twisted.ensureDeferred
async def test_list_users_orders_pages_and_searches(store):
    for name, full in [("zoe", "Zoe Z"), ("adam", "Adam Smith"), ("mia", "Mia Smithers"), ("o_k", "100% OK")]:
        await store.create_user(name, full_name=full, email=f"{name}@example.org", card_numbers=[f"card-{name}"])
    users, total = await store.list_users()
    assert total == 4 and [u.username for u in users] == ["adam", "mia", "o_k", "zoe"]
    assert users[0].card_numbers == ("card-adam",)
    page, total = await store.list_users(offset=1, limit=2)
    assert total == 4 and [u.username for u in page] == ["mia", "o_k"]
    found, total = await store.list_users(search="SMITH")
    assert total == 2 and [u.username for u in found] == ["adam", "mia"]
    assert [u.username for u in (await store.list_users(search="zoe@"))[0]] == ["zoe"]
    # LIKE wildcards in the search are taken literally.
    assert [u.username for u in (await store.list_users(search="%"))[0]] == ["o_k"]
    assert [u.username for u in (await store.list_users(search="_"))[0]] == ["o_k"]


@pytest_twisted.ensureDeferred
async def test_groups_and_members(store):
    staff = await store.create_group("staff", "Everyone employed")
    students = await store.create_group("students")
    assert await store.get_group(staff.id) == staff
    assert await store.get_group_by_name("students") == students
    assert [g.name for g in await store.list_groups()] == ["staff", "students"]
    with pytest.raises(Conflict):
        await store.create_group("staff")
    with pytest.raises(NotFound):
        await store.get_group(999)
    with pytest.raises(NotFound):
        await store.get_group_by_name("nope")

    ann = await store.create_user("ann")
    ben = await store.create_user("ben")
    await store.add_group_member(staff.id, ben.id)
    await store.add_group_member(staff.id, ann.id)
    await store.add_group_member(staff.id, ann.id)  # idempotent
    await store.add_group_member(students.id, ann.id)
    assert [u.username for u in await store.group_members(staff.id)] == ["ann", "ben"]
    assert [g.name for g in await store.user_groups(ann.id)] == ["staff", "students"]
    await store.remove_group_member(staff.id, ann.id)
    await store.remove_group_member(staff.id, ann.id)  # idempotent
    assert [u.username for u in await store.group_members(staff.id)] == ["ben"]
    assert [g.name for g in await store.user_groups(ann.id)] == ["students"]
    with pytest.raises(NotFound):
        await store.add_group_member(staff.id, 99999)
    with pytest.raises(NotFound):
        await store.add_group_member(99999, ann.id)
    with pytest.raises(NotFound):
        await store.group_members(99999)
    with pytest.raises(NotFound):
        await store.user_groups(99999)


@pytest_twisted.ensureDeferred
async def test_paging_arguments_are_checked_the_same_on_both_engines(store):
    user = await store.create_user("pager")
    for call in (lambda: store.list_users(offset=-1), lambda: store.list_users(limit=-1),
                 lambda: store.list_accounts(limit=-5), lambda: store.list_jobs(offset=-2),
                 lambda: store.list_transactions(user.personal_account_id, limit="many"),
                 lambda: store.changes_since(-1)):
        with pytest.raises(InvalidInput):
            await call()
    assert (await store.list_users(limit=0)) == ([], 1)
