"""Ledger arithmetic: when may an account be charged, and what does a balance become.

The stores apply these rules inside their database transactions (the PostgreSQL engine mirrors
`can_charge` in its record-job function); the Site Server applies them to its replica offline.
"""

from decimal import Decimal


def can_charge(balance: Decimal, cost: Decimal, *, restricted: bool, overdraft: Decimal) -> bool:
    """May `cost` (a positive amount) be taken from an account with this balance?

    An unrestricted account may always be charged. A restricted one may go down to
    `-overdraft` and no further. A zero cost is always allowed, so free jobs print even on an
    account that is already overdrawn.
    """
    if not restricted or cost <= 0:
        return True
    return balance - cost >= -overdraft


def entry_allowed(balance: Decimal, amount: Decimal, *, restricted: bool, overdraft: Decimal) -> bool:
    """The guard for a signed ledger amount (negative = charge): credits always pass."""
    return can_charge(balance, -amount, restricted=restricted, overdraft=overdraft)


def allocation_amount(balance: Decimal, amount: Decimal, cap: Decimal | None) -> Decimal:
    """How much a quota allocation of `amount` adds to `balance` given an optional cap.

    With a cap the allocation tops up to the cap and never beyond; a balance already at or
    over the cap gets nothing (never a negative allocation).
    """
    if cap is None:
        return amount
    room = cap - balance
    if room <= 0:
        return Decimal(0)
    return min(amount, room)
