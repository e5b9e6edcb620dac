"""The ledger invariant under random operation sequences, on both engines: every balance is the
sum of its account's transactions, each row's balance_after is the running sum, repeats are
no-ops, and the guard matches a simple model (pcnet.domain.ledger.entry_allowed)."""

from decimal import Decimal

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from pcnet.domain.ledger import entry_allowed
from pcnet.domain.model import JobStatus, TransactionKind
from pcnet.errors import InsufficientFunds

from .helpers import D, charge_for, entry, job, new_uuid

amounts = st.decimals(min_value=Decimal(-20), max_value=Decimal(20), places=4)
costs = st.decimals(min_value=Decimal(0), max_value=Decimal(8), places=4)
account_index = st.integers(min_value=0, max_value=2)

operations = st.lists(st.one_of(
    st.tuples(st.just("entry"), account_index, amounts, st.booleans()),
    st.tuples(st.just("repeat"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("set"), account_index, amounts),
    st.tuples(st.just("job"), account_index, costs, st.booleans()),
    st.tuples(st.just("job_repeat"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("hold_release"), account_index, costs),
    st.tuples(st.just("burst"), st.integers(min_value=2, max_value=12), costs),
), min_size=1, max_size=25)


class Model:
    """What the balances must be, op by op."""

    def __init__(self, accounts):
        self.balance = {a.id: a.balance for a in accounts}
        self.restricted = {a.id: a.restricted for a in accounts}
        self.overdraft = {a.id: a.overdraft for a in accounts}

    def allowed(self, account_id, amount, guard):
        return not guard or entry_allowed(self.balance[account_id], amount,
                                          restricted=self.restricted[account_id],
                                          overdraft=self.overdraft[account_id])


async def run_scenario(store, ops, tag):
    u1 = await store.create_user(f"a{tag}", initial_balance=D(10), overdraft=D(2))
    u2 = await store.create_user(f"b{tag}", initial_balance=D(1), restricted=True)
    shared = await store.create_shared_account(f"s{tag}", restricted=False, initial_balance=D(0))
    printer = await store.create_printer(f"p{tag}")
    accounts = [await store.get_account(u1.personal_account_id),
                await store.get_account(u2.personal_account_id), shared]
    users = [u1, u2, u1]
    model = Model(accounts)
    entries, jobs = [], []

    for op in ops:
        kind = op[0]
        if kind == "entry":
            _, i, amount, guard = op
            e = entry(accounts[i].id, amount, kind=TransactionKind.ADJUST)
            try:
                t = await store.apply_ledger_entry(e, guard=guard)
            except InsufficientFunds:
                assert not model.allowed(e.account_id, amount, guard)
            else:
                assert model.allowed(e.account_id, amount, guard)
                model.balance[e.account_id] += amount
                assert t.balance_after == model.balance[e.account_id]
                entries.append((e, t))
        elif kind == "repeat" and entries:
            e, t = entries[op[1] % len(entries)]
            assert await store.apply_ledger_entry(e, guard=True) == t
        elif kind == "set":
            _, i, amount = op
            t = await store.set_balance(accounts[i].id, amount, uuid=new_uuid())
            model.balance[accounts[i].id] = amount
            assert t.balance_after == amount
        elif kind == "job":
            _, i, cost, guard = op
            j = job(users[i], printer, cost=cost, account_id=accounts[i].id)
            try:
                stored, t = await store.record_job(j, charge_for(j), guard=guard)
            except InsufficientFunds:
                assert not model.allowed(j.account_id, -cost, guard)
            else:
                assert model.allowed(j.account_id, -cost, guard)
                model.balance[j.account_id] -= cost
                jobs.append((j, (stored, t)))
        elif kind == "job_repeat" and jobs:
            j, result = jobs[op[1] % len(jobs)]
            assert await store.record_job(j, charge_for(j, uuid=new_uuid())) == result
        elif kind == "hold_release":
            _, i, cost = op
            held, _ = await store.record_job(job(users[i], printer, cost=cost, account_id=accounts[i].id,
                                                 status=JobStatus.HELD))
            try:
                await store.update_job_status(held.uuid, JobStatus.PRINTED, charge=charge_for(held))
            except InsufficientFunds:
                assert not model.allowed(held.account_id, -cost, True)
            else:
                assert model.allowed(held.account_id, -cost, True)
                model.balance[held.account_id] -= cost
        elif kind == "burst":
            # Concurrent jobs on the unrestricted shared account: all are charged.
            _, n, cost = op
            burst = [job(u1, printer, cost=cost, account_id=shared.id) for _ in range(n)]
            await defer.gatherResults([store.record_job(j, charge_for(j)) for j in burst])
            model.balance[shared.id] -= cost * n

    for account in accounts:
        stored = await store.get_account(account.id)
        assert stored.balance == model.balance[account.id]
        txns, total = await store.list_transactions(account.id, limit=100_000)
        assert len(txns) == total
        assert sum((t.amount for t in txns), D(0)) == stored.balance
        running = D(0)
        for t in sorted(txns, key=lambda t: t.id):
            running += t.amount
            assert t.balance_after == running
        assert len({t.uuid for t in txns}) == len(txns)


_tags = iter(range(1_000_000))
_settings = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


# pytest-twisted runs each generated example on the reactor. The PostgreSQL variant gets fewer
# examples: each one is a few hundred round trips.
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
@settings(max_examples=100, **_settings)
@given(ops=operations)
@pytest_twisted.ensureDeferred
async def test_random_operation_sequences_keep_the_ledger_invariant_sqlite(store, ops):
    await run_scenario(store, ops, next(_tags))


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
@settings(max_examples=25, **_settings)
@given(ops=operations)
@pytest_twisted.ensureDeferred
async def test_random_operation_sequences_keep_the_ledger_invariant_postgres(store, ops):
    await run_scenario(store, ops, next(_tags))
