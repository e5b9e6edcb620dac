"""The records drivers and the core exchange through `IDeviceServices`: plain frozen dataclasses.

Money is Decimal; times are timezone-aware UTC datetimes. No I/O here: the Application Server
and the Site Server share these, and so do drivers written outside pcnet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pcnet.domain.model import DEFAULT_PAPER_SIZE
from pcnet.errors import InvalidInput


class DeviceState(str, enum.Enum):
    """How a device is, as its driver (or the core, for a driver in trouble) sees it."""

    STARTING = "starting"   # the core is starting the driver
    UP = "up"               # in service, nothing wrong reported
    WARNING = "warning"     # in service with a problem (toner low, a paper tray empty)
    ERROR = "error"         # out of service (jammed, door open), or its driver failed
    DOWN = "down"           # unreachable (missed polls, connection lost)
    UNKNOWN = "unknown"     # reachable, but it does not report its state
    STOPPED = "stopped"


@dataclass(frozen=True)
class DeviceStatus:
    """A device's state with what the driver knows about why.

    `error_states`: conditions the device reports (e.g. the names of the
    `hrPrinterDetectedErrorState` bits set: "lowToner", "jammed"); `not_reported`: what the
    driver asked for and the device does not report (so nobody mistakes a missing object for
    a healthy one); `facts`: the raw values behind the verdict, by name.
    """

    state: DeviceState
    detail: str = ""
    error_states: tuple[str, ...] = ()
    not_reported: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict, compare=False, hash=False)
    at: datetime | None = None


@dataclass(frozen=True)
class Supply:
    """One marker supply (toner, drum, waste container) of RFC 3805's prtMarkerSuppliesTable.

    `level` and `max_capacity` are as the device reports them, RFC 3805's special values
    included; `percent` is level / capacity when both are real numbers, else None and
    `remaining` says why: "percent", "unknown" (-2), "some" (-3: some remains), "other" (-1),
    "capacity unknown" (a real level but capacity -2 or -1).
    """

    index: int
    description: str
    kind: str
    level: int
    max_capacity: int
    percent: int | None
    remaining: str


@dataclass(frozen=True)
class Counters:
    """Page counters. `life`: prtMarkerLifeCount (impressions since manufacture), None when the
    device does not report it; `detail`: vendor counters by name ("print.mono",
    "copy.colour", "total.mono", "scan.colour", ...) where the device has them."""

    life: int | None
    detail: dict = field(default_factory=dict, compare=False, hash=False)
    not_reported: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    """One row of RFC 3805's prtAlertTable."""

    index: int
    severity: str
    group: str
    code: str
    description: str = ""


@dataclass(frozen=True)
class Identity:
    """Who signed in at a device (never their secrets)."""

    user_id: int
    username: str
    full_name: str = ""
    personal_account_id: int | None = None


@dataclass(frozen=True)
class AccountChoice:
    """An account a user may charge at a device. `available`: what may still be spent (balance
    plus overdraft for a restricted account), None when unlimited."""

    id: int
    name: str
    kind: str                    # "personal" or "shared"
    balance: Decimal
    available: Decimal | None
    restricted: bool = True


@dataclass(frozen=True)
class HeldJob:
    """A held job as a device shows it to its owner."""

    uuid: str
    document_name: str
    pages: int
    colour_pages: int
    copies: int
    duplex: bool
    paper_size: str
    cost: Decimal
    status: str = "held"
    printer_name: str = ""
    created_at: datetime | None = None


USAGE_KINDS = ("copy", "scan", "fax")


@dataclass(frozen=True)
class Usage:
    """What a device did for a user: copies, scans or faxes, to be charged and logged.

    `pages` are sides (impressions, or scanned/faxed pages) in all, `colour_pages` of them in
    colour; `account_id` None charges the user's personal account, `shared_account` names a
    shared one instead. `uuid` makes recording idempotent: derive it from the device's own job
    id where there is one, so a job log read twice is charged once.
    """

    uuid: str
    kind: str
    user_id: int
    pages: int
    colour_pages: int = 0
    duplex: bool = False
    paper_size: str = DEFAULT_PAPER_SIZE
    account_id: int | None = None
    document_name: str = ""
    at: datetime | None = None

    def __post_init__(self):
        if self.kind not in USAGE_KINDS:
            raise InvalidInput(f"kind: must be one of {', '.join(USAGE_KINDS)}", field="kind")
        if not isinstance(self.uuid, str) or not 8 <= len(self.uuid) <= 64:
            raise InvalidInput("uuid: a string of 8 to 64 characters", field="uuid")
        for name in ("pages", "colour_pages"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 10_000_000:
                raise InvalidInput(f"{name}: a whole number from 0 to 10,000,000", field=name)
        if self.colour_pages > self.pages:
            raise InvalidInput("colour_pages: more than pages", field="colour_pages")


@dataclass(frozen=True)
class UsageReceipt:
    """What recording a `Usage` did: its cost, the account charged and the balance after.
    `repeated` is True when the uuid had been recorded already (nothing was charged again)."""

    uuid: str
    cost: Decimal
    account_id: int
    balance_after: Decimal
    repeated: bool = False
