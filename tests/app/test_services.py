"""The service layer on both engines: each write checked once by the rules, allowed only to
the actors that may make it, audited in its transaction (who, from where, what, before and
after, never a secret), and published on the change bus once committed."""

from __future__ import annotations

from decimal import Decimal

import pytest
import pytest_twisted

from pcnet.app.events import ChangeBus
from pcnet.app.services import SCHEDULER, Actor, Services, TokenRefused
from pcnet.domain.model import AccountKind, JobAction, JobRequest
from pcnet.errors import Conflict, Forbidden, InvalidInput, NotFound
from tests.support.clock import SteppedReactor, clock_at

D = Decimal
T0 = 1_741_773_600   # 2025-03-12T10:00:00Z

ADMIN = Actor("token", name="backup script", id="3", address="192.0.2.9", admin=True)
CLI = Actor.for_cli(["import-users", "--config", "/etc/pcnet/pcnet.toml", "users.csv"],
                    os_user="root", host="print-server")


class World:
    def __init__(self, store):
        self.store = store
        self.clock = clock_at(T0)
        self.bus = ChangeBus()
        self.events = []
        self.bus.subscribe(self.events.append)
        self.services = Services(store, SteppedReactor(self.clock), self.bus)

    def published(self):
        out = [(e.kind, e.op) for e in self.events]
        self.events.clear()
        return out

    async def audit(self, **filters):
        rows, _ = await self.store.list_audit(**filters)
        return rows


@pytest_twisted.ensureDeferred
async def test_a_user_is_created_and_changed_with_an_audit_row_each_and_never_a_hash(store):
    w = World(store)
    s = w.services
    ann = await s.users.create(ADMIN, "ann", full_name="Ann", password="s3cret!", pin="4321",
                               card_numbers=["04A2"], initial_balance=D("5.00"))
    assert w.published() == [("user", "create"), ("account", "create"), ("card", "create")]
    (created,) = await w.audit()
    assert (created.action, created.object_kind, created.object_id, created.object_name) == (
        "user.create", "user", str(ann.id), "ann")
    assert (created.actor, created.actor_name, created.address) == (
        "token:3", "backup script", "192.0.2.9")
    assert created.before is None
    assert created.after["password"] == "set" and created.after["pin"] == "set"
    assert created.after["restricted"] is True and created.after["initial_balance"] == "5.0000"

    await s.users.update(ADMIN, "ann", password="an0ther!", office="B2")
    update = (await w.audit(action="user.update"))[0]
    assert update.before == {"office": "", "password": "set"}
    assert update.after == {"office": "B2", "password": "changed"}
    await s.users.update(ADMIN, ann.id, pin=None)
    assert (await w.audit(action="user.update"))[0].after == {"pin": "removed"}
    rows = repr(await w.audit())
    stored = await store.get_user(ann.id)
    assert "scrypt$" not in rows and stored.password_hash not in rows and "s3cret" not in rows

    # Nothing changed: no row, no event.
    w.published()
    await s.users.update(ADMIN, "ann", office="B2")
    assert len(await w.audit(action="user.update")) == 2 and w.published() == [("user", "update")]


@pytest_twisted.ensureDeferred
async def test_every_value_is_checked_by_its_rule_before_anything_is_written(store):
    w = World(store)
    s = w.services
    for call, field in (
        (s.users.create(ADMIN, "has space"), "username"),
        (s.users.create(ADMIN, "ann", email="not-an-address"), "email"),
        (s.users.create(ADMIN, "ann", pin="12"), "pin"),
        (s.users.create(ADMIN, "ann", card_numbers=["A1", "A1"]), "card_numbers[1]"),
        (s.users.create(ADMIN, "ann", overdraft=D("-1")), "overdraft"),
        (s.groups.create(ADMIN, " staff"), "name"),
        (s.printers.create(ADMIN, "p", cost_model={"grey": D("1001")}), "cost_model.grey"),
        (s.printers.create(ADMIN, "p", filters={"deny_document_patterns": ["("]}),
         "filters.deny_document_patterns[0]"),
        (s.printers.create(ADMIN, "p", hold_mode="sometimes"), "hold_mode"),
        (s.quotas.create(ADMIN, "g", D("0"), "daily"), "amount"),
        (s.nodes.invite(ADMIN, "a/b"), "name"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await call
        assert refused.value.field == field, refused.value.message
    assert (await store.list_users())[1] == 0 and await store.list_printers() == []
    assert await w.audit() == [] and w.events == []


@pytest_twisted.ensureDeferred
async def test_only_administrators_make_administrative_changes(store):
    w = World(store)
    s = w.services
    provider = Actor.for_node("provider", "print01", "192.0.2.1")
    ann = await s.users.create(ADMIN, "ann", password="pw")
    as_ann = Actor.for_user(ann, "192.0.2.5")
    for actor in (provider, as_ann, SCHEDULER):
        for call in (s.users.create(actor, "bob"), s.printers.create(actor, "p"),
                     s.accounts.adjust(actor, ann.personal_account_id, D(1), uuid="u1"),
                     s.tokens.create(actor, "t"), s.offline_policy.update(actor, restricted_credit=D(1)),
                     s.audit.list(actor)):
            with pytest.raises(Forbidden):
                await call
    # The same user as an administrator may; through /me (as_admin=False) never.
    await s.users.update(ADMIN, "ann", admin=True)
    boss = Actor.for_user(await s.users.get("ann"))
    assert boss.admin and not Actor.for_user(await s.users.get("ann"), as_admin=False).admin
    await s.printers.create(boss, "p")


@pytest_twisted.ensureDeferred
async def test_an_actor_cannot_disable_or_demote_its_own_user(store):
    s = World(store).services
    root = await s.users.create(ADMIN, "root", admin=True)
    own = Actor("token", name="t", id="9", admin=True, user_id=root.id)
    for change in ({"disabled": True}, {"admin": False}):
        with pytest.raises(Conflict):
            await s.users.update(own, "root", **change)
    await s.users.update(ADMIN, "root", disabled=True)   # another administrator may


@pytest_twisted.ensureDeferred
async def test_an_adjustment_is_applied_once_and_audited_once(store):
    w = World(store)
    s = w.services
    ann = await s.users.create(ADMIN, "ann")
    txn, account = await s.accounts.adjust(ADMIN, ann.personal_account_id, D("2.50"),
                                           uuid="7b1f7e7e-0000-4000-8000-000000000001",
                                           comment="refund")
    assert account.balance == D("2.5000") and txn.reference == "token:3"
    again, _ = await s.accounts.adjust(ADMIN, ann.personal_account_id, D("2.50"),
                                       uuid="7b1f7e7e-0000-4000-8000-000000000001")
    assert again == txn
    with pytest.raises(Conflict) as reused:
        await s.accounts.adjust(ADMIN, ann.personal_account_id, D("9.00"),
                                uuid="7b1f7e7e-0000-4000-8000-000000000001")
    assert reused.value.code == "idempotency_conflict"
    (row,) = await w.audit(action="account.adjust")
    assert row.object_id == str(ann.personal_account_id) and row.before == {"balance": "0.0000"}
    assert row.after == {"balance": "2.5000", "amount": "2.5000", "comment": "refund",
                         "transaction": txn.uuid}
    _, after = await s.accounts.set_balance(CLI, ann.personal_account_id, D("1.00"),
                                            uuid="7b1f7e7e-0000-4000-8000-000000000002")
    assert after.balance == D("1.0000")
    (row,) = await w.audit(action="account.set_balance")
    assert (row.actor, row.address) == ("cli:root", "print-server")
    assert row.detail == "pcnet import-users --config /etc/pcnet/pcnet.toml users.csv"


@pytest_twisted.ensureDeferred
async def test_memberships_and_access_are_idempotent_and_audited_when_they_change(store):
    w = World(store)
    s = w.services
    ann = await s.users.create(ADMIN, "ann")
    staff = await s.groups.create(ADMIN, "staff")
    shared = await s.accounts.create_shared(ADMIN, "physics")
    w.published()
    for _ in range(2):
        await s.groups.add_member(ADMIN, "staff", "ann")
        await s.accounts.grant(ADMIN, "physics", group="staff")
    assert w.published() == [("group_member", "create"), ("account_access", "create")]
    await s.groups.remove_member(ADMIN, staff.id, "ann")
    await s.accounts.revoke(ADMIN, shared.id, group=staff.id)
    actions = [(r.action, r.object_name, r.before, r.after) for r in reversed(await w.audit())]
    assert actions[-4:] == [
        ("group.add_member", "staff", None, {"user_id": ann.id, "username": "ann"}),
        ("account.grant", "physics", None, {"group_id": staff.id, "group": "staff"}),
        ("group.remove_member", "staff", {"user_id": ann.id, "username": "ann"}, None),
        ("account.revoke", "physics", {"group_id": staff.id, "group": "staff"}, None),
    ]


@pytest_twisted.ensureDeferred
async def test_upsert_creates_or_updates_a_user_and_makes_missing_groups(store):
    s = World(store).services
    user, created = await s.users.upsert(CLI, "ann", groups=["staff", "lab"], full_name="Ann",
                                         initial_balance=D(3))
    assert created and [g.name for g in await s.users.groups("ann")] == ["lab", "staff"]
    user, created = await s.users.upsert(CLI, "ann", groups=["staff"], restricted=False,
                                         overdraft=D(5), office="B2",
                                         initial_balance=D(100))   # only for a new user
    account = await s.users.personal_account("ann")
    assert not created and user.office == "B2"
    assert (account.restricted, account.overdraft, account.balance) == (False, D(5), D(3))


@pytest_twisted.ensureDeferred
async def test_new_users_are_restricted_by_default(store):
    s = World(store).services
    await s.users.create(ADMIN, "ann")
    account = await s.users.personal_account("ann")
    assert account.kind is AccountKind.PERSONAL and account.restricted and account.overdraft == 0


@pytest_twisted.ensureDeferred
async def test_a_printer_changes_by_parts_and_its_audit_row_shows_only_the_parts(store):
    w = World(store)
    s = w.services
    printer = await s.printers.create(ADMIN, "lib", cost_model={"grey": D("0.10")},
                                      filters={"max_pages": 50}, disabled=True)
    assert printer.disabled and printer.filters.max_pages == 50
    updated = await s.printers.update(ADMIN, "lib", cost_model={"colour": D("0.80")},
                                      filters={"max_pages": None})
    assert (updated.cost_model.grey, updated.cost_model.colour) == (D("0.10"), D("0.80"))
    (row,) = await w.audit(action="printer.update")
    assert set(row.before) == set(row.after) == {"cost_model", "filters"}
    assert (row.before["cost_model"]["colour"], row.after["cost_model"]["colour"]) == ("0.5000", "0.8000")
    assert (row.before["filters"]["max_pages"], row.after["filters"]["max_pages"]) == (50, None)
    with pytest.raises(InvalidInput) as twice:
        await s.printers.update(ADMIN, "lib", cost_model={"sizes": {"A4": (D(1), D(2)),
                                                                    "a4": (D(1), D(2))}})
    assert twice.value.field == "cost_model.sizes.a4"


@pytest_twisted.ensureDeferred
async def test_tokens_and_node_invitations_are_audited_without_their_secrets(store):
    w = World(store)
    s = w.services
    token, record = await s.tokens.create(ADMIN, "export")
    code, _ = await s.nodes.invite(ADMIN, "print01")
    await s.tokens.revoke(ADMIN, record.id)
    text = repr(await w.audit())
    assert token not in text and code not in text
    actions = [r.action for r in await w.audit()]
    assert actions == ["token.revoke", "node.invite", "token.create"]
    with pytest.raises(TokenRefused):
        await s.tokens.authenticate(token, "192.0.2.1")   # revoked


@pytest_twisted.ensureDeferred
async def test_the_offline_policy_is_validated_audited_and_published(store):
    w = World(store)
    s = w.services
    shared = await s.accounts.create_shared(ADMIN, "Offline Account")
    ann = await s.users.create(ADMIN, "ann")
    w.published()
    with pytest.raises(InvalidInput) as needs_user:
        await s.offline_policy.update(ADMIN, unknown_users="charge-user")
    assert needs_user.value.field == "unknown_user"
    with pytest.raises(InvalidInput) as personal:
        await s.offline_policy.update(ADMIN, offline_account=ann.personal_account_id)
    assert personal.value.field == "offline_account"
    with pytest.raises(NotFound):
        await s.offline_policy.update(ADMIN, unknown_user="nobody")
    policy = await s.offline_policy.update(
        ADMIN, offline_account="Offline Account", restricted_credit=D("2.00"),
        unknown_users="charge-user", unknown_user="ann", password_auth_offline=False)
    assert (policy.offline_account_id, policy.unknown_user_id) == (shared.id, ann.id)
    assert w.published() == [("offline_policy", "update")]
    (row,) = await w.audit(object_kind="offline_policy")
    assert row.object_id == "1" and row.before["restricted_credit"] == "0.0000"
    assert row.after["restricted_credit"] == "2.0000" and "updated_at" not in row.after
    # The same policy again: no change, no row, no event.
    await s.offline_policy.update(ADMIN, restricted_credit=D("2.00"))
    assert len(await w.audit(object_kind="offline_policy")) == 1 and w.published() == []


@pytest_twisted.ensureDeferred
async def test_a_charge_publishes_the_job_and_its_account_and_keeps_the_cached_balance(store):
    """The job path's cache follows the bus, but the balance a charge left is the one it just
    saw: the account stays cached (the hot path does not read it again), while an
    administrator's adjustment makes it forget."""
    w = World(store)
    s = w.services
    ann = await s.users.create(ADMIN, "ann", initial_balance=D("5.00"))
    printer = await s.printers.create(ADMIN, "lib")
    w.published()
    request = JobRequest(username="ann", printer_id=printer.id, pages=2)
    decision, job = await s.jobs.submit(request, ADMIN)
    assert decision.action is JobAction.PRINT
    assert (await store.get_job(job.uuid)).printer_name == "lib"
    assert w.published() == [("job", "create"), ("account", "update")]
    cached = s.jobs.directory._accounts[ann.personal_account_id][1]
    assert cached.balance == D("4.8000")
    await s.accounts.adjust(ADMIN, ann.personal_account_id, D("1.00"),
                            uuid="7b1f7e7e-0000-4000-8000-0000000000aa")
    assert ann.personal_account_id not in s.jobs.directory._accounts
    assert await w.audit(object_kind="job") == []   # jobs are in the job log, not the audit log
