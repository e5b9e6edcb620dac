"""The job decision: filters, account rules, hold mode and balance, in their documented order."""

from decimal import Decimal

import pytest

from pcnet.domain.decision import decide, valid_pattern
from pcnet.domain.model import (
    Account,
    AccountKind,
    CostModel,
    Filters,
    HoldMode,
    JobAction,
    JobRequest,
    Printer,
    User,
)

D = Decimal
USER = User(id=1, username="alice", personal_account_id=10)
ACCOUNT = Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D("5.00"), restricted=True)
PRINTER = Printer(id=7, name="lib-colour", cost_model=CostModel(grey=D("0.10"), colour=D("0.50")))


def job(**kw):
    base = dict(username="alice", printer_id=7, pages=4, colour_pages=1, copies=1, document_name="essay.pdf")
    base.update(kw)
    return JobRequest(**base)


def printer(**filters):
    return Printer(id=7, name="lib-colour", cost_model=PRINTER.cost_model, filters=Filters(**filters))


def test_affordable_job_prints_with_its_cost():
    d = decide(job(), PRINTER, USER, ACCOUNT)
    assert d.action is JobAction.PRINT
    assert d.cost == D("0.8000")
    assert d.account_id == 10


def test_insufficient_balance_denies_restricted_account():
    poor = Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D("0.50"), restricted=True)
    d = decide(job(), PRINTER, USER, poor)
    assert d.action is JobAction.DENY
    assert d.reason.startswith("insufficient balance")


def test_unrestricted_account_prints_into_negative():
    poor = Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D("0"), restricted=False)
    assert decide(job(), PRINTER, USER, poor).action is JobAction.PRINT


@pytest.mark.parametrize("filters, request_changes, reason", [
    (dict(max_copies=2), dict(copies=3), "too many copies"),
    (dict(max_pages=10), dict(pages=4, copies=3), "too many pages"),
    (dict(grey_only=True), dict(colour_pages=1), "colour not allowed"),
    (dict(duplex_only=True), dict(duplex=False, pages=2), "single-sided not allowed"),
    (dict(max_cost=D("0.50")), dict(), "job too expensive"),
    (dict(deny_document_patterns=(r"\.mp3$", "^secret")), dict(document_name="SECRET plans"), "document name not allowed"),
])
def test_each_filter_denies_with_its_reason(filters, request_changes, reason):
    d = decide(job(**request_changes), printer(**filters), USER, ACCOUNT)
    assert d.action is JobAction.DENY
    assert d.reason.startswith(reason)


def test_filters_pass_when_within_limits():
    p = printer(max_copies=3, max_pages=12, duplex_only=True, max_cost=D("5"),
                deny_document_patterns=(r"\.mp3$",))
    assert decide(job(copies=3, duplex=True), p, USER, ACCOUNT).action is JobAction.PRINT


def test_single_page_simplex_passes_duplex_only():
    assert decide(job(pages=1, colour_pages=0), printer(duplex_only=True), USER, ACCOUNT).action is JobAction.PRINT


def test_duplicate_only_denies_when_window_is_set():
    assert decide(job(), printer(duplicate_window_seconds=60), USER, ACCOUNT, duplicate=True).action is JobAction.DENY
    assert decide(job(), printer(), USER, ACCOUNT, duplicate=True).action is JobAction.PRINT


def test_hold_mode_holds_without_checking_balance():
    held = Printer(id=7, name="secure", cost_model=PRINTER.cost_model, hold_mode=HoldMode.HOLD)
    poor = Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D("0"), restricted=True)
    d = decide(job(), held, USER, poor)
    assert d.action is JobAction.HOLD
    assert d.cost == D("0.8000")


def test_filters_apply_before_hold():
    held = Printer(id=7, name="secure", hold_mode=HoldMode.HOLD, filters=Filters(max_copies=1))
    assert decide(job(copies=2), held, USER, ACCOUNT).action is JobAction.DENY


def test_disabled_user_printer_and_account_are_denied():
    from dataclasses import replace

    assert "user disabled" in decide(job(), PRINTER, replace(USER, disabled=True), ACCOUNT).reason
    assert "printer disabled" in decide(job(), replace(PRINTER, disabled=True), USER, ACCOUNT).reason
    assert "disabled" in decide(job(), PRINTER, USER, replace(ACCOUNT, disabled=True)).reason


def test_account_the_user_may_not_use_is_denied():
    shared = Account(id=99, name="physics", kind=AccountKind.SHARED, balance=D("100"))
    d = decide(job(account_id=99), PRINTER, USER, shared, account_allowed=False)
    assert d.action is JobAction.DENY
    assert d.reason.startswith("account not available")


def test_invalid_patterns_are_detected():
    assert valid_pattern(r"\.pdf$")
    assert not valid_pattern("(unclosed")
