"""The job decision: given an analysed job, its printer, its user and the account to charge,
print it, deny it with a reason, or hold it.

The rules run in a fixed order so that a user always hears about the first thing that is
wrong: the server's job limits, then disabled printer or user, then the printer's filters
(document name, copies, pages, colour, duplex, duplicate), then the cost limit, then the
account, then the hold mode, and last the balance. A held job is not charged now (it is charged
when it prints), so the balance is only checked for jobs that print at once; a release runs the
same rules again (`releasing=True`) without the hold.

A job that printed while no server answered (`settle_offline`) is judged by the same limits and
account rules, but cannot be denied any more: what breaks them becomes the job's *problem*, and
the offline policy says what is charged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache

from pcnet.domain.cost import job_cost
from pcnet.domain.ledger import can_charge
from pcnet.domain.model import (
    Account,
    Decision,
    HoldMode,
    JobAction,
    JobLimits,
    JobRequest,
    OfflinePolicy,
    Printer,
    User,
)
from pcnet.money import ZERO, format_money

#: The limits used when none are given (the `[jobs]` defaults).
DEFAULT_LIMITS = JobLimits()


class DenyReason:
    """Stable prefixes of deny reasons, so reports can group them."""

    JOB_LIMITS = "over the job limits"
    UNKNOWN_USER = "unknown user"
    PRINTER_DISABLED = "printer disabled"
    USER_DISABLED = "user disabled"
    DOCUMENT_NAME = "document name not allowed"
    TOO_MANY_COPIES = "too many copies"
    TOO_MANY_PAGES = "too many pages"
    COLOUR_NOT_ALLOWED = "colour not allowed"
    SIMPLEX_NOT_ALLOWED = "single-sided not allowed"
    DUPLICATE = "duplicate job"
    TOO_EXPENSIVE = "job too expensive"
    ACCOUNT = "account not available"
    INSUFFICIENT_FUNDS = "insufficient balance"


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        # A bad pattern is refused when a printer is saved; if one slips through it matches
        # nothing rather than denying every job.
        return None


def valid_pattern(pattern: str) -> bool:
    return _compiled(pattern) is not None


def check_filters(job: JobRequest, printer: Printer, *, cost: Decimal, duplicate: bool) -> str | None:
    """The first filter the job breaks, as a deny reason; None when it passes them all."""
    f = printer.filters
    for pattern in f.deny_document_patterns:
        compiled = _compiled(pattern)
        if compiled is not None and compiled.search(job.document_name or ""):
            return f"{DenyReason.DOCUMENT_NAME}: {job.document_name!r}"
    if f.max_copies is not None and job.copies > f.max_copies:
        return f"{DenyReason.TOO_MANY_COPIES}: {job.copies} (limit {f.max_copies})"
    total = job.pages * job.copies
    if f.max_pages is not None and total > f.max_pages:
        return f"{DenyReason.TOO_MANY_PAGES}: {total} (limit {f.max_pages})"
    if f.grey_only and job.colour_pages > 0:
        return f"{DenyReason.COLOUR_NOT_ALLOWED} on {printer.name}"
    if f.duplex_only and not job.duplex and job.pages > 1:
        return f"{DenyReason.SIMPLEX_NOT_ALLOWED} on {printer.name}"
    if f.duplicate_window_seconds and duplicate:
        return f"{DenyReason.DUPLICATE}: the same document printed in the last {f.duplicate_window_seconds} s"
    if f.max_cost is not None and cost > f.max_cost:
        return f"{DenyReason.TOO_EXPENSIVE}: {format_money(cost)} (limit {format_money(f.max_cost)})"
    return None


def check_limits(pages: int, copies: int, limits: JobLimits = DEFAULT_LIMITS) -> str | None:
    """The job limit a job of `pages` pages (one copy) x `copies` breaks, as a deny reason
    (`DenyReason.JOB_LIMITS`); None within them. Also used by the Print Provider offline."""
    if copies > limits.max_copies:
        return f"{DenyReason.JOB_LIMITS}: {copies} copies (limit {limits.max_copies})"
    if pages > limits.max_pages:
        return f"{DenyReason.JOB_LIMITS}: {pages} pages per copy (limit {limits.max_pages})"
    if pages * copies > limits.max_total_pages:
        return (f"{DenyReason.JOB_LIMITS}: {pages * copies} pages in all "
                f"(limit {limits.max_total_pages})")
    return None


def check_access(user: User, account: Account | None, account_allowed: bool) -> str | None:
    """Why `user` may not charge `account` (a deny reason), or None. `account` None means it
    does not exist (or the user has no personal account)."""
    if account is None or not account_allowed:
        return f"{DenyReason.ACCOUNT}: {user.username} may not charge this account"
    if account.disabled:
        return f"{DenyReason.ACCOUNT}: {account.name} is disabled"
    return None


def decide(job: JobRequest, printer: Printer, user: User, account: Account | None, *,
           account_allowed: bool = True, duplicate: bool = False,
           limits: JobLimits = DEFAULT_LIMITS, releasing: bool = False) -> Decision:
    """Decide what happens to `job`.

    `account` is the account the job would be charged to (the user's personal account, or the
    shared account the user chose); `account_allowed` says whether the user may charge it (the
    caller looked up the access rights); `duplicate` says whether an identical job was seen
    within the printer's duplicate window (the caller asked the job log, only when that filter
    is on). `limits` are the server's job limits. `releasing`: a held job is being released to
    print on `printer`, so the hold mode no longer applies (print or deny).

    A job over the limits is denied before its cost is worked out (what it claims may be
    absurd); its decision's cost is zero.
    """
    account_id = account.id if account is not None else None
    over = check_limits(job.pages, job.copies, limits)
    if over:
        return Decision(JobAction.DENY, ZERO, over, account_id)
    cost = job_cost(printer.cost_model, pages=job.pages, colour_pages=job.colour_pages,
                    duplex=job.duplex, copies=job.copies, paper_size=job.paper_size)

    def deny(reason: str) -> Decision:
        return Decision(JobAction.DENY, cost, reason, account_id)

    if printer.disabled:
        return deny(f"{DenyReason.PRINTER_DISABLED}: {printer.name}")
    if user.disabled:
        return deny(f"{DenyReason.USER_DISABLED}: {user.username}")
    broken = check_filters(job, printer, cost=cost, duplicate=duplicate)
    if broken:
        return deny(broken)
    refused = check_access(user, account, account_allowed)
    if refused:
        return deny(refused)
    if printer.hold_mode is not HoldMode.NONE and not releasing:
        return Decision(JobAction.HOLD, cost, f"held for release ({printer.hold_mode.value})", account_id)
    if not can_charge(account.balance, cost, restricted=account.restricted, overdraft=account.overdraft):
        return deny(f"{DenyReason.INSUFFICIENT_FUNDS}: costs {format_money(cost)}, "
                    f"balance {format_money(account.balance)}")
    return Decision(JobAction.PRINT, cost, "", account_id)


# --- jobs that printed while no server answered ------------------------------------------------


@dataclass(frozen=True)
class OfflineSettlement:
    """What the job log records for a job that printed offline, and what is charged."""

    account_id: int | None   # the account charged; None: nothing is charged
    cost: Decimal            # the charge (or, when nothing is charged, what the job costs)
    problem: str             # '' when the job met every rule; else why an administrator should look
    charged_job: JobRequest  # the job as charged (at the limits when it claimed more)


def at_limits(job: JobRequest, limits: JobLimits) -> JobRequest:
    """The job cut down to the limits: at most `max_copies` copies of at most `max_pages`
    pages (colour pages kept first), and at most `max_total_pages` pages in all."""
    pages = min(job.pages, limits.max_pages, limits.max_total_pages)
    copies = min(job.copies, limits.max_copies, max(1, limits.max_total_pages // max(pages, 1)))
    return replace(job, pages=pages, copies=copies, colour_pages=min(job.colour_pages, pages))


def settle_offline(job: JobRequest, printer: Printer, user: User | None, account: Account | None, *,
                   account_allowed: bool, personal: Account | None,
                   limits: JobLimits = DEFAULT_LIMITS,
                   policy: OfflinePolicy = OfflinePolicy.FLAG) -> OfflineSettlement:
    """Settle a job that has printed while no server answered, by the rules a live decision
    applies: the job limits and who may charge what.

    `user` is None for a username the server does not know; `account` is the account the job
    asked to be charged (None: it does not exist), `account_allowed` whether the user may
    charge it, `personal` the user's personal account. A job that meets the rules is charged
    in full, without the balance guard (it has printed). One that breaks them is recorded with
    its problem (the live deny reason), and `policy` decides the charge:

    - `flag`: nothing is charged;
    - `charge-at-limits`: a job over the limits is charged as if it were at them
      (`at_limits`); a job on an account the user may not charge (or by a disabled user) is
      charged to the user's personal account, if it has a usable one.

    An unknown user is never charged. The printer's filters and the balance are not problems:
    they decide whether a job may print, and this one has.
    """
    problems = []
    over = check_limits(job.pages, job.copies, limits)
    charged_job = job
    if over:
        problems.append(over)
        charged_job = at_limits(job, limits)
    cost = job_cost(printer.cost_model, pages=charged_job.pages,
                    colour_pages=charged_job.colour_pages, duplex=charged_job.duplex,
                    copies=charged_job.copies, paper_size=charged_job.paper_size)
    if user is None:
        problems.append(f"{DenyReason.UNKNOWN_USER}: {job.username}")
        return OfflineSettlement(None, cost, "; ".join(problems) + "; not charged", charged_job)
    target = account
    refused = f"{DenyReason.USER_DISABLED}: {user.username}" if user.disabled else None
    refused = refused or check_access(user, account, account_allowed)
    if refused:
        problems.append(refused)
        usable = personal is not None and not personal.disabled
        target = personal if usable else None
    if not problems:
        return OfflineSettlement(account.id, cost, "", charged_job)
    if policy is OfflinePolicy.FLAG:
        return OfflineSettlement(None, cost,
                                 "; ".join(problems) + "; not charged (offline policy flag)",
                                 charged_job)
    if target is None:
        return OfflineSettlement(None, cost, "; ".join(problems) + "; not charged: no account "
                                 f"{user.username} may charge", charged_job)
    how = []
    if over:
        how.append(f"charged at the limits ({charged_job.copies} x {charged_job.pages} pages)")
    if refused:
        how.append(f"charged to {user.username}'s personal account")
    return OfflineSettlement(target.id, cost, "; ".join(problems + how), charged_job)
