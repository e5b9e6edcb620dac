"""The records of the domain: users, groups, accounts, ledger transactions, printers, quotas, jobs.

Plain frozen dataclasses. Money is `Decimal`; times are timezone-aware UTC `datetime`s; ids are
integers assigned by the store except where a uuid is the identity (ledger transactions and jobs,
so that a Site Server can create them offline and replay them exactly once).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pcnet.money import ZERO


class AccountKind(str, enum.Enum):
    PERSONAL = "personal"
    SHARED = "shared"


class TransactionKind(str, enum.Enum):
    """Why a balance changed. Every balance change is one transaction row of one of these kinds."""

    CHARGE = "charge"          # a print or copy job
    REFUND = "refund"          # a job charge given back
    ADJUST = "adjust"          # an administrator's manual change (+/-)
    SET = "set"                # an administrator set the balance; the row holds the delta
    ALLOCATION = "allocation"  # a scheduled group quota top-up
    INITIAL = "initial"        # the starting credit of a new account


class JobAction(str, enum.Enum):
    PRINT = "print"
    DENY = "deny"
    HOLD = "hold"


class JobStatus(str, enum.Enum):
    """Where a job is in its life (ARCHITECTURE §4): analysed -> decided -> ... -> printed."""

    PRINTED = "printed"        # printed and charged
    DENIED = "denied"
    HELD = "held"              # waiting for release; not yet charged
    RELEASED = "released"      # released from hold, on its way to the printer
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class HoldMode(str, enum.Enum):
    NONE = "none"          # print at once
    HOLD = "hold"          # hold until the owner or an administrator releases it here
    FIND_ME = "find-me"    # a virtual queue: held, released at a chosen physical printer


class FailureMode(str, enum.Enum):
    """What a Print Provider does with this printer's jobs when no server answers."""

    PRINT_LOG_LATER = "print-log-later"  # print, journal locally, charge when the link returns
    PRINT_NO_LOG = "print-no-log"        # print, never charged
    HOLD = "hold"                        # hold until the link returns


class OfflinePolicy(str, enum.Enum):
    """What the server does with a job that printed while no server answered (a Print
    Provider's journal, later a Site Server's replay) but breaks the job limits or the
    account-access rules: it has printed, so it is recorded either way, with its problem."""

    FLAG = "flag"                          # charge nothing; the job log row carries the problem
    CHARGE_AT_LIMITS = "charge-at-limits"  # charge what the rules allow at most, and flag it


class OfflineAccountSelection(str, enum.Enum):
    """Which account a Site Server charges offline when choosing it needs the centre."""

    OFFLINE_ACCOUNT = "offline-account"   # the policy's shared offline account
    PERSONAL = "personal"                 # the user's personal account
    CANCEL = "cancel"                     # the job is cancelled


class UnknownUsers(str, enum.Enum):
    """What a Site Server does offline with a user or card it does not know."""

    DENY = "deny"
    CHARGE_USER = "charge-user"           # charge a named user, to be matched later


class QuotaPeriod(str, enum.Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    full_name: str = ""
    email: str = ""
    department: str = ""
    office: str = ""
    card_numbers: tuple[str, ...] = ()
    # Slow salted hashes (pcnet.domain.secrets); None when not set. Never serialised out.
    password_hash: str | None = field(default=None, repr=False)
    pin_hash: str | None = field(default=None, repr=False)
    disabled: bool = False
    admin: bool = False
    personal_account_id: int | None = None
    created_at: datetime | None = None

    def public(self) -> dict:
        """The user as shown in APIs: every field but the secret hashes."""
        return {
            "id": self.id,
            "username": self.username,
            "full_name": self.full_name,
            "email": self.email,
            "department": self.department,
            "office": self.office,
            "card_numbers": list(self.card_numbers),
            "has_password": self.password_hash is not None,
            "has_pin": self.pin_hash is not None,
            "disabled": self.disabled,
            "admin": self.admin,
            "personal_account_id": self.personal_account_id,
        }


@dataclass(frozen=True)
class Group:
    id: int
    name: str
    description: str = ""


@dataclass(frozen=True)
class Account:
    """A balance that jobs are charged to: a user's personal account or a shared account.

    A restricted account cannot be charged below `-overdraft`; an unrestricted one can go
    negative without limit. Shared accounts may have a parent (for reporting: "Science/Physics")
    and an optional PIN that users type to charge them.
    """

    id: int
    name: str
    kind: AccountKind
    balance: Decimal = ZERO
    restricted: bool = True
    overdraft: Decimal = ZERO
    owner_user_id: int | None = None     # personal accounts
    parent_id: int | None = None         # shared accounts
    pin_hash: str | None = field(default=None, repr=False)
    disabled: bool = False
    comment: str = ""


@dataclass(frozen=True)
class LedgerEntry:
    """A balance change to be applied. `uuid` makes it idempotent: a repeat is a no-op."""

    uuid: str
    account_id: int
    amount: Decimal                 # negative for a charge
    kind: TransactionKind
    reference: str = ""             # e.g. the job uuid
    comment: str = ""
    origin: str = "app"             # the node that created it (app, or a site server's name)
    created_at: datetime | None = None


@dataclass(frozen=True)
class Transaction:
    """A stored ledger row: the entry plus the balance it left behind."""

    id: int
    uuid: str
    account_id: int
    amount: Decimal
    balance_after: Decimal
    kind: TransactionKind
    reference: str
    comment: str
    origin: str
    created_at: datetime


@dataclass(frozen=True)
class CostModel:
    """Price of one printed side, by colour and paper size, with a discount for duplex.

    `sizes` maps a paper size name (as the spool analysis reports it, e.g. "A4", "A3",
    "Letter") to its own (grey, colour) price; other sizes use the defaults. The duplex discount
    is taken off each side printed in duplex and never takes a side below zero.
    """

    grey: Decimal = Decimal("0.1000")
    colour: Decimal = Decimal("0.5000")
    duplex_discount: Decimal = ZERO
    sizes: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    def __hash__(self):
        return hash((self.grey, self.colour, self.duplex_discount, tuple(sorted(self.sizes.items()))))


@dataclass(frozen=True)
class Filters:
    """Per-printer rules a job must pass. None/empty means the rule is off."""

    max_pages: int | None = None          # pages x copies
    max_copies: int | None = None
    max_cost: Decimal | None = None
    grey_only: bool = False               # deny jobs with colour pages
    duplex_only: bool = False             # deny multi-page simplex jobs
    deny_document_patterns: tuple[str, ...] = ()   # case-insensitive regular expressions
    duplicate_window_seconds: int | None = None    # deny the same document again within N s


#: The largest count (pages, colour pages, copies) a job may claim at all: what the job log stores
#: (64-bit signed integers on both engines). Anything above is malformed input, not a job.
MAX_COUNT = 2**63 - 1


@dataclass(frozen=True)
class JobLimits:
    """Server-wide bounds on what one job may claim (`[jobs]` in the server configuration).

    A spool file can claim any number of copies or pages (a PWG header's NumCopies, PostScript's
    /NumCopies, PJL COPIES, a file of form feeds); no real job is bigger than these, so a job
    over them is denied, never charged as claimed. The defaults: CUPS itself refuses more than
    9,999 copies (cupsd's MaxCopies default); 10,000 pages is beyond any real document (a
    book-length PDF has a few hundred); 100,000 pages in all is more than a day's output of
    the fastest office device (about 70 pages a minute for 24 hours). The largest values that
    may be configured keep every job's cost far inside the ledger's 64-bit minor units even at
    the highest page price.
    """

    max_copies: int = 9_999
    max_pages: int = 10_000          # pages of one copy
    max_total_pages: int = 100_000   # pages x copies

    #: Upper bounds for the configuration (at 1,000 a side, 10,000,000 pages cost 10^10).
    CEILING = {"max_copies": 100_000, "max_pages": 1_000_000, "max_total_pages": 10_000_000}

    def __post_init__(self):
        for name, ceiling in self.CEILING.items():
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= ceiling:
                raise ValueError(f"{name}: must be a whole number from 1 to {ceiling:,}")

    def to_json(self) -> dict:
        return {"max_copies": self.max_copies, "max_pages": self.max_pages,
                "max_total_pages": self.max_total_pages}


@dataclass(frozen=True)
class Printer:
    """A physical or virtual (Find-Me) queue. `id` is stable; renaming keeps history."""

    id: int
    name: str
    server: str = ""                       # the print server (provider node) it lives on
    queue: str = ""                        # the queue name on that server
    location: str = ""
    cost_model: CostModel = field(default_factory=CostModel)
    filters: Filters = field(default_factory=Filters)
    hold_mode: HoldMode = HoldMode.NONE
    failure_mode: FailureMode = FailureMode.PRINT_LOG_LATER
    pdl: str = ""                          # page description language family, for Find-Me
    disabled: bool = False


@dataclass(frozen=True)
class Quota:
    """A scheduled allocation to every member of a group's personal account.

    With `cap`, an allocation never lifts a balance above the cap (it tops up to it).
    """

    id: int
    group_id: int
    amount: Decimal
    period: QuotaPeriod
    cap: Decimal | None = None
    next_due_at: datetime | None = None
    last_applied_at: datetime | None = None


#: The paper size assumed when a job does not say (configurable: the server's `[jobs]
#: paper_size`, the Print Provider's `[analysis] paper_size`).
DEFAULT_PAPER_SIZE = "A4"


@dataclass(frozen=True)
class JobRequest:
    """A job as analysed, asking for a decision."""

    username: str
    printer_id: int
    pages: int                      # pages of one copy
    colour_pages: int = 0           # of those, how many are colour
    duplex: bool = False
    copies: int = 1
    paper_size: str = DEFAULT_PAPER_SIZE
    document_name: str = ""
    account_id: int | None = None   # a shared account chosen by the user; None = personal
    client: str = ""                # the submitting machine
    uuid: str | None = None         # the job's identity; assigned if None


@dataclass(frozen=True)
class Decision:
    action: JobAction
    cost: Decimal
    reason: str = ""
    account_id: int | None = None


@dataclass(frozen=True)
class JobRecord:
    """One row of the job log."""

    uuid: str
    user_id: int | None
    username: str
    printer_id: int
    account_id: int | None
    pages: int
    colour_pages: int
    duplex: bool
    copies: int
    paper_size: str
    document_name: str
    cost: Decimal
    status: JobStatus
    reason: str = ""
    client: str = ""
    origin: str = "app"
    created_at: datetime | None = None
    id: int | None = None
    #: Why an administrator should look at this job ('' for none): an offline job outside the
    #: job limits or the account-access rules. Starts with a `DenyReason` prefix.
    problem: str = ""
    #: Who released the held job and who cancelled it (or "scheduler" for an expiry), as the
    #: audit log names actors ("token:3", "user:ann"); '' when nobody did.
    released_by: str = ""
    cancelled_by: str = ""
    #: The printer's name as it is now (the id is what stays): shown with the job, not part of
    #: it ('' when not read with it), so it takes no part in comparisons.
    printer_name: str = field(default="", compare=False)

    @property
    def total_pages(self) -> int:
        return self.pages * self.copies


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    user_id: int | None
    created_at: datetime
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class SiteOfflinePolicy:
    """What a Site Server does while its link to the Application Server is down (set
    centrally, replicated). Not to be confused with `OfflinePolicy`, which settles jobs a Print
    Provider printed while no server answered.

    - `account_selection`: the account charged when choosing it needs the centre;
    - `offline_account_id`: the shared account for `OFFLINE_ACCOUNT` (None: not chosen yet, the
      personal account is charged);
    - `restricted_credit`: how far below its last known balance a restricted account may go
      offline (0: not at all);
    - `unknown_users`, `unknown_user_id`: deny unknown users and cards, or charge this user;
    - `password_auth_offline`: whether users may sign in with a password offline.
    """

    account_selection: OfflineAccountSelection = OfflineAccountSelection.OFFLINE_ACCOUNT
    offline_account_id: int | None = None
    restricted_credit: Decimal = ZERO
    unknown_users: UnknownUsers = UnknownUsers.DENY
    unknown_user_id: int | None = None
    password_auth_offline: bool = True
    updated_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log: who (`actor`, e.g. "token:3", "cli:root"; `actor_name`), from
    where (`address`; `detail`: a command line), what (`action` such as "user.update", on
    `object_kind`/`object_id`/`object_name`) and the values before and after (JSON-able dicts
    of the fields that changed, without secrets). `id` and `at` are the store's."""

    action: str
    object_kind: str
    object_id: str = ""
    object_name: str = ""
    before: dict | None = None
    after: dict | None = None
    actor: str = ""
    actor_name: str = ""
    address: str = ""
    detail: str = ""
    at: datetime | None = None
    id: int | None = None


def replace(obj, **changes):
    """`dataclasses.replace`, re-exported so callers need not import dataclasses."""
    return dataclasses.replace(obj, **changes)
