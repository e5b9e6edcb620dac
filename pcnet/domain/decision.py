"""The job decision: given an analysed job, its printer, its user and the account to charge,
print it, deny it with a reason, or hold it.

The rules run in a fixed order so that a user always hears about the first thing that is
wrong: disabled printer or user, then the printer's filters (document name, copies, pages,
colour, duplex, duplicate), then the cost limit, then the account, then the hold mode, and
last the balance. A held job is not charged now (it is charged when it prints), so the
balance is only checked for jobs that print at once.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from pcnet.domain.cost import job_cost
from pcnet.domain.ledger import can_charge
from pcnet.domain.model import Account, Decision, HoldMode, JobAction, JobRequest, Printer, User
from pcnet.money import format_money


class DenyReason:
    """Stable prefixes of deny reasons, so reports can group them."""

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


def decide(job: JobRequest, printer: Printer, user: User, account: Account | None, *,
           account_allowed: bool = True, duplicate: bool = False) -> Decision:
    """Decide what happens to `job`.

    `account` is the account the job would be charged to (the user's personal account, or the
    shared account the user chose); `account_allowed` says whether the user may charge it (the
    caller looked up the access rights); `duplicate` says whether an identical job was seen
    within the printer's duplicate window (the caller asked the job log, only when that filter
    is on).
    """
    cost = job_cost(printer.cost_model, pages=job.pages, colour_pages=job.colour_pages,
                    duplex=job.duplex, copies=job.copies, paper_size=job.paper_size)
    account_id = account.id if account is not None else None

    def deny(reason: str) -> Decision:
        return Decision(JobAction.DENY, cost, reason, account_id)

    if printer.disabled:
        return deny(f"{DenyReason.PRINTER_DISABLED}: {printer.name}")
    if user.disabled:
        return deny(f"{DenyReason.USER_DISABLED}: {user.username}")
    broken = check_filters(job, printer, cost=cost, duplicate=duplicate)
    if broken:
        return deny(broken)
    if account is None or not account_allowed:
        return deny(f"{DenyReason.ACCOUNT}: {user.username} may not charge this account")
    if account.disabled:
        return deny(f"{DenyReason.ACCOUNT}: {account.name} is disabled")
    if printer.hold_mode is not HoldMode.NONE:
        return Decision(JobAction.HOLD, cost, f"held for release ({printer.hold_mode.value})", account_id)
    if not can_charge(account.balance, cost, restricted=account.restricted, overdraft=account.overdraft):
        return deny(f"{DenyReason.INSUFFICIENT_FUNDS}: costs {format_money(cost)}, "
                    f"balance {format_money(account.balance)}")
    return Decision(JobAction.PRINT, cost, "", account_id)
