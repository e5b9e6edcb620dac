"""Money: `Decimal` in Python, integer minor units of 1/10,000 of the currency in storage.

Never a float: parsing refuses floats, and amounts are quantised to the storage precision so that
what is stored is exactly what was computed.
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

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


def parse_money(value, field: str = "amount") -> Decimal:
    """Parse an amount from JSON/CSV/config input: a string or an int, never a float.

    Floats are refused because a float in a request has already lost the exact value the
    sender meant ("0.1" is not 0.1 as a float).
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput(f"{field}: give money as a string such as \"1.50\", not a number with a fraction")
    if isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInput(f"{field}: {value!r} is not an amount") from None
    else:
        raise InvalidInput(f"{field}: expected an amount such as \"1.50\"")
    if not amount.is_finite():
        raise InvalidInput(f"{field}: {value!r} is not an amount")
    # Far below what 64-bit minor units hold (9.2e14 currency units), so sums stay in range.
    if abs(amount) >= MAX_AMOUNT:
        raise InvalidInput(f"{field}: {value!r} is out of range")
    return quantize(amount)


def format_money(amount: Decimal) -> str:
    """The canonical string form used in JSON replies: 4 decimal places."""
    return str(quantize(amount))
