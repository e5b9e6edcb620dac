"""Ledger rules: the overdraft guard and quota caps."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from pcnet.domain.ledger import allocation_amount, can_charge, entry_allowed

D = Decimal
money = st.decimals(min_value=-1000, max_value=1000, places=4)
positive = st.decimals(min_value=0, max_value=1000, places=4)


def test_restricted_account_stops_at_overdraft_limit():
    assert can_charge(D("1.00"), D("1.00"), restricted=True, overdraft=D("0"))
    assert not can_charge(D("1.00"), D("1.01"), restricted=True, overdraft=D("0"))
    assert can_charge(D("1.00"), D("3.00"), restricted=True, overdraft=D("2.00"))
    assert not can_charge(D("1.00"), D("3.01"), restricted=True, overdraft=D("2.00"))


def test_unrestricted_account_can_go_negative():
    assert can_charge(D("0"), D("1000"), restricted=False, overdraft=D("0"))


def test_free_jobs_print_on_an_overdrawn_account():
    assert can_charge(D("-5"), D("0"), restricted=True, overdraft=D("0"))


def test_credits_always_pass_the_guard():
    assert entry_allowed(D("-50"), D("1"), restricted=True, overdraft=D("0"))


@given(balance=money, cost=positive, overdraft=positive)
def test_guard_means_balance_never_ends_below_limit(balance, cost, overdraft):
    if can_charge(balance, cost, restricted=True, overdraft=overdraft) and cost > 0:
        assert balance - cost >= -overdraft


@given(balance=money, amount=positive, cap=st.one_of(st.none(), money))
def test_allocation_respects_cap(balance, amount, cap):
    added = allocation_amount(balance, amount, cap)
    assert 0 <= added <= amount
    if cap is None:
        assert added == amount
    elif balance >= cap:
        assert added == 0
    else:
        assert balance + added <= cap
