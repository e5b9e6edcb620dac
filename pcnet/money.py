"""Money: `Decimal` in Python, integer minor units of 1/10,000 of the currency in storage.

Never a float: parsing refuses floats, and amounts are quantised to the storage precision so that
what is stored is exactly what was computed.
"""

import re
from decimal import ROUND_HALF_EVEN, Decimal

from pcnet.errors import InvalidInput

#: Storage precision: 4 decimal places (1/10,000 of the currency unit).
MINOR_UNITS = 10_000
QUANTUM = Decimal("0.0001")
ZERO = Decimal("0.0000")
#: The largest amount accepted from input, and the largest job cost charged.
MAX_AMOUNT = Decimal(10) ** 12


def to_minor(amount: Decimal) -> int:
    """Decimal currency amount -> integer minor units (rounded half-even to 1/10,000)."""
    return int(quantize(amount) * MINOR_UNITS)


def from_minor(minor: int) -> Decimal:
    """Integer minor units -> Decimal with 4 places."""
    return (Decimal(int(minor)) / MINOR_UNITS).quantize(QUANTUM)


def quantize(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


#: The one written form of an amount pcnet accepts (docs/api.md; the OpenAPI pattern is this).
MONEY_PATTERN = r"-?[0-9]{1,13}(\.[0-9]{1,4})?"
_MONEY = re.compile(MONEY_PATTERN, re.ASCII)
_TOO_PRECISE = re.compile(r"-?[0-9]{1,13}\.[0-9]{5,}", re.ASCII)


def parse_money(value, field: str = "amount") -> Decimal:
    """Parse an amount from JSON/CSV/config input: a string or an int, never a float.

    A string must be exactly `MONEY_PATTERN`: ASCII digits, an optional leading `-`, at most 4
    decimal places; no spaces, `+`, `_`, exponents or other scripts' digits, which `Decimal`
    would take but the documentation does not promise. Floats are refused because a float in
    a request has already lost the exact value the sender meant ("0.1" is not 0.1 as a float).
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{field}: give money as a string such as \"1.50\", not a number with a fraction")
    if isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    elif isinstance(value, str):
        if not _MONEY.fullmatch(value):
            if _TOO_PRECISE.fullmatch(value):
                raise InvalidInput(f"{field}: {value!r} has more than 4 decimal places")
            shown = repr(value) if len(value) <= 40 else "the value"
            raise InvalidInput(f"{field}: {shown} is not an amount such as \"1.50\" "
                               "(digits, an optional leading -, up to 4 decimal places)")
        amount = Decimal(value)
    else:
        raise InvalidInput(f"{field}: expected an amount such as \"1.50\"")
    if not amount.is_finite():
        raise InvalidInput(f"{field}: {value!r} is not an amount")
    # Far below what 64-bit minor units hold (9.2e14 currency units), so sums stay in range.
    if abs(amount) >= MAX_AMOUNT:
        raise InvalidInput(f"{field}: {value!r} is out of range")
    return quantize(abs(amount) if amount == 0 else amount)  # "-0" is 0.0000, not -0.0000


def format_money(amount: Decimal) -> str:
    """The canonical string form used in JSON replies: 4 decimal places."""
    return str(quantize(amount))
