"""The rules a value must meet before it is written: one definition of each length, pattern,
range and choice, for every way in.

The service layer (`pcnet.app.services`) checks every value it is given against these rules
before anything is written; the admin API's field specs (`pcnet.web._fields`) take their limits
from the same objects (so the OpenAPI document states exactly what the services enforce), the
`pcnet` commands' CSV importers hand their cells to the services, and pcnet/1 messages
(`pcnet.net.messages`) bound their fields with them. Pure: no I/O, shared with the Print
Provider and the Site Server.

A rule's `check(value, field)` returns the value (normalised where a rule says so) or raises
`InvalidInput` naming `field`, with a message fit for an administrator.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal

from pcnet.domain.decision import valid_pattern
from pcnet.domain.enrolment import NODE_NAME_HINT, NODE_NAME_PATTERN
from pcnet.domain.model import MAX_COUNT
from pcnet.errors import InvalidInput
from pcnet.money import format_money

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NUL = re.compile(r"\x00")

#: Money given by anyone is bounded well inside what the ledger's 64-bit minor units hold.
MAX_MONEY = Decimal(1_000_000_000)


def invalid(field: str | None, message: str) -> InvalidInput:
    """The one shape of a refusal: `field: message`, with `field` set."""
    return InvalidInput(f"{field}: {message}" if field else message, field=field or None)


@dataclass(frozen=True)
class Text:
    """Text: UTF-8 without NUL or other control characters (newlines only where `multiline`;
    any but NUL where `controls`, for what a print job says about itself, which pcnet records
    as it came), within `min_length`..`max_length` characters, without surrounding white space
    unless `strip_check` is off, matching `pattern` (explained by `hint`) when there is one."""

    min_length: int = 0
    max_length: int = 255
    pattern: str | None = None
    hint: str = ""
    multiline: bool = False
    strip_check: bool = True
    controls: bool = False

    def __post_init__(self):
        if self.pattern is not None:
            object.__setattr__(self, "_compiled", re.compile(self.pattern))

    def check(self, value, field: str) -> str:
        if not isinstance(value, str):
            raise invalid(field, "expected text")
        if not value.isascii():   # ASCII (most names) cannot hold a lone surrogate
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise invalid(field, "contains an invalid character (an unpaired surrogate)") from None
        refused = _NUL if self.controls else _CONTROL_BUT_NEWLINES if self.multiline else _CONTROL
        bad = refused.search(value)
        if bad:
            raise invalid(field, f"contains a control character (code {ord(bad.group()):#04x})")
        if len(value) < self.min_length:
            if self.min_length == 1:
                raise invalid(field, "must not be empty")
            raise invalid(field, f"must be at least {self.min_length} characters long")
        if len(value) > self.max_length:
            raise invalid(field, f"must be at most {self.max_length} characters long")
        if self.strip_check and value != value.strip():
            raise invalid(field, "must not start or end with white space")
        if self.pattern is not None and not self._compiled.fullmatch(value):
            raise invalid(field, self.hint or f"must match {self.pattern}")
        return value


@dataclass(frozen=True)
class RegexText(Text):
    """A case-insensitive regular expression (document name filters)."""

    def check(self, value, field: str) -> str:
        value = super().check(value, field)
        if not valid_pattern(value):
            raise invalid(field, f"{value!r} is not a valid regular expression")
        return value


@dataclass(frozen=True)
class Amount:
    """An amount of money (a Decimal with at most 4 places, as `pcnet.money.parse_money`
    makes) within `minimum`..`maximum`, not zero when `nonzero`."""

    minimum: Decimal | None = -MAX_MONEY
    maximum: Decimal | None = MAX_MONEY
    nonzero: bool = False

    def check(self, value, field: str) -> Decimal:
        if not isinstance(value, Decimal) or not value.is_finite():
            raise invalid(field, "expected an amount such as \"1.50\"")
        if value != value.quantize(Decimal("0.0001")):
            raise invalid(field, f"{value} has more than 4 decimal places")
        if self.minimum is not None and value < self.minimum:
            raise invalid(field, f"{format_money(value)} is below the minimum {format_money(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise invalid(field, f"{format_money(value)} is above the maximum {format_money(self.maximum)}")
        if self.nonzero and value == 0:
            raise invalid(field, "must not be zero")
        return value


@dataclass(frozen=True)
class Count:
    """A whole number (never a boolean) within `minimum`..`maximum`."""

    minimum: int = 0
    maximum: int = MAX_COUNT

    def check(self, value, field: str) -> int:
        if type(value) is not int:
            raise invalid(field, f"expected a whole number, got {type(value).__name__}")
        if not self.minimum <= value <= self.maximum:
            raise invalid(field, f"{value} is out of range ({self.minimum} to {self.maximum})")
        return value


def choice(enum_type: type[enum.Enum], value, field: str):
    """`value` (a member or its `.value`) as a member of `enum_type`."""
    if isinstance(value, enum_type):
        return value
    for member in enum_type:
        if member.value == value:
            return member
    allowed = ", ".join(m.value for m in enum_type)
    shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
    raise invalid(field, f"{shown} is not one of {allowed}")


def boolean(value, field: str) -> bool:
    if type(value) is not bool:
        raise invalid(field, "expected true or false")
    return value


def items(rule, values, field: str, *, max_items: int, unique: bool = False) -> tuple:
    """A list of values each meeting `rule`, at most `max_items`, each once when `unique`."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise invalid(field, "expected a list")
    values = list(values)
    if len(values) > max_items:
        raise invalid(field, f"has {len(values)} items; at most {max_items} are allowed")
    out = []
    for i, value in enumerate(values):
        value = rule.check(value, f"{field}[{i}]")
        if unique and value in out:
            raise invalid(f"{field}[{i}]", f"{value!r} is listed twice")
        out.append(value)
    return tuple(out)


# --- the rules, by what they are for ---------------------------------------------------------

#: A login name: it cannot be changed later and appears in URLs.
USERNAME = Text(min_length=1, max_length=128, pattern=r"[^/\s]+",
                hint="must not contain spaces or slashes")
#: A name of a group, shared account, printer or API token.
NAME = Text(min_length=1, max_length=128)
#: One line of descriptive text (full name, department, office, location, server, queue).
LINE = Text(max_length=255)
EMAIL = Text(max_length=254, pattern=r"|[^@\s]+@[^@\s]+",
             hint="expected an e-mail address such as ann@example.org")
#: A card number: a credential, never repeated back in an error about whose it is.
CARD = Text(min_length=1, max_length=64, pattern=r"\S+", hint="must not contain spaces")
MAX_CARDS = 20
PASSWORD = Text(min_length=1, max_length=1024, strip_check=False)
PIN = Text(pattern=r"[0-9A-Za-z]{4,32}", max_length=32, hint="must be 4 to 32 letters or digits")
#: A comment or description: several lines.
COMMENT = Text(max_length=1000, multiline=True, strip_check=False)
#: Why a held job was cancelled, as recorded in the job log.
REASON = Text(max_length=255)

#: Any amount an administrator may give (an adjustment, a balance, an initial balance).
ANY_AMOUNT = Amount()
ADJUSTMENT = Amount(nonzero=True)
#: How far below zero a restricted account may go; a quota cap; a filter's cost limit.
NON_NEGATIVE = Amount(minimum=Decimal(0))
#: A price per side: bounded so that every job cost stays far inside the ledger.
PRICE = Amount(minimum=Decimal(0), maximum=Decimal(1000))
QUOTA_AMOUNT = Amount(minimum=Decimal("0.0001"))

#: A paper size name in a cost model (matched case-insensitively against the spool analysis).
SIZE_NAME = Text(min_length=1, max_length=32, pattern=r"[A-Za-z0-9_.+\-]+",
                 hint="must be letters, digits, '_', '.', '+' or '-'")
MAX_SIZES = 50
DOCUMENT_PATTERN = RegexText(min_length=1, max_length=500, strip_check=False)
MAX_DOCUMENT_PATTERNS = 50
FILTER_MAX_PAGES = Count(1, 1_000_000)
FILTER_MAX_COPIES = Count(1, 100_000)
DUPLICATE_WINDOW = Count(1, 30 * 86_400)
PDL = Text(max_length=32)

#: What a job may say about itself (every way in: pcnet/1, the API's import, a replay).
JOB_USERNAME = Text(min_length=1, max_length=255, strip_check=False, controls=True)
JOB_PAGES = Count(0, MAX_COUNT)
JOB_COPIES = Count(1, MAX_COUNT)
PAPER_SIZE = Text(min_length=1, max_length=64, strip_check=False, controls=True)
DOCUMENT_NAME = Text(max_length=1000, strip_check=False, controls=True)
CLIENT = Text(max_length=255, strip_check=False, controls=True)

#: A pcnet/1 node's name as an administrator invites it.
NODE_NAME = Text(min_length=1, max_length=255, pattern=NODE_NAME_PATTERN, hint=NODE_NAME_HINT)
#: A CUPS queue name as a provider registers it.
QUEUE = Text(min_length=1, max_length=255, strip_check=False, controls=True)
#: A location a provider reports for a queue.
QUEUE_LOCATION = Text(max_length=255, strip_check=False, controls=True)
