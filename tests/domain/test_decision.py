"""The job decision: the job limits, filters, account rules, hold mode and balance, in their
documented order; and how a job that printed offline is settled by the same rules."""

from decimal import Decimal

import pytest

from pcnet.domain.decision import DenyReason, check_limits, decide, settle_offline, valid_pattern
from pcnet.domain.model import (
    Account,
    AccountKind,
    CostModel,
    Filters,
    HoldMode,
    JobAction,
    JobLimits,
    JobRequest,
    OfflinePolicy,
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


# --- the server's job limits --------------------------------------------------------------------

LIMITS = JobLimits(max_copies=10, max_pages=100, max_total_pages=500)


@pytest.mark.parametrize("pages, copies, reason", [
    (1, 4_294_967_295, "over the job limits: 4294967295 copies (limit 10)"),
    (101, 1, "over the job limits: 101 pages per copy (limit 100)"),
    (100, 6, "over the job limits: 600 pages in all (limit 500)"),
])
def test_a_job_over_the_limits_is_denied_first_with_the_stable_reason_and_no_cost(pages, copies, reason):
    from dataclasses import replace

    # Before everything else, even a disabled printer: the claim itself is what is wrong.
    d = decide(job(pages=pages, colour_pages=0, copies=copies), replace(PRINTER, disabled=True),
               USER, ACCOUNT, limits=LIMITS)
    assert (d.action, d.reason, d.cost) == (JobAction.DENY, reason, D(0))
    assert d.reason.startswith(DenyReason.JOB_LIMITS)


def test_a_job_at_the_limits_is_decided_as_usual():
    assert decide(job(pages=50, colour_pages=0, copies=10), PRINTER, USER,
                  Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D(100)),
                  limits=LIMITS).action is JobAction.PRINT


def test_the_default_limits_refuse_the_copies_a_spool_file_can_claim():
    assert check_limits(1, 2**31 - 1).startswith(DenyReason.JOB_LIMITS)
    assert check_limits(1, 9_999) is None and check_limits(1, 10_000) is not None
    assert check_limits(10_000, 10) is None and check_limits(10_001, 1) is not None
    assert check_limits(10_000, 11) is not None   # 110,000 pages in all


def test_limits_are_bounded_so_no_cost_can_leave_the_ledgers_range():
    with pytest.raises(ValueError):
        JobLimits(max_copies=100_001)
    with pytest.raises(ValueError):
        JobLimits(max_total_pages=0)
    top = JobLimits(**JobLimits.CEILING)
    assert top.max_total_pages * D(1000) < D(2**63) / 10_000   # 1,000 a side, minor units


def test_releasing_decides_without_the_hold_mode():
    held = Printer(id=7, name="secure", cost_model=PRINTER.cost_model, hold_mode=HoldMode.HOLD)
    assert decide(job(), held, USER, ACCOUNT, releasing=True).action is JobAction.PRINT
    poor = Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D("0.10"))
    assert decide(job(), held, USER, poor, releasing=True).reason.startswith("insufficient balance")


# --- jobs printed while no server answered ------------------------------------------------------

SHARED = Account(id=20, name="physics", kind=AccountKind.SHARED, balance=D("50"))


def settle(j, *, user=USER, account=ACCOUNT, allowed=True, personal=ACCOUNT,
           policy=OfflinePolicy.FLAG):
    return settle_offline(j, PRINTER, user, account, account_allowed=allowed, personal=personal,
                          limits=LIMITS, policy=policy)


def test_an_offline_job_within_the_rules_is_charged_in_full_to_its_account():
    s = settle(job(account_id=20), account=SHARED)
    assert (s.account_id, s.cost, s.problem) == (20, D("0.8000"), "")


def test_an_offline_job_over_the_limits_is_flagged_and_not_charged_under_flag():
    s = settle(job(pages=1, colour_pages=0, copies=4_294_967_295))
    assert s.account_id is None
    assert s.problem == ("over the job limits: 4294967295 copies (limit 10); "
                         "not charged (offline policy flag)")
    assert s.cost == D("1.0000")   # what it costs at the limits: 10 copies of one grey page


def test_charge_at_limits_charges_an_offline_job_as_if_it_were_at_the_limits():
    s = settle(job(pages=1, colour_pages=0, copies=4_294_967_295), policy=OfflinePolicy.CHARGE_AT_LIMITS)
    assert (s.account_id, s.cost) == (10, D("1.0000"))
    assert s.problem.startswith("over the job limits: 4294967295 copies")
    assert s.problem.endswith("charged at the limits (10 x 1 pages)")
    # Pages too: at most 100 of one copy, colour pages first, 500 in all.
    big = settle(job(pages=10**9, colour_pages=10**9, copies=7), policy=OfflinePolicy.CHARGE_AT_LIMITS)
    assert (big.charged_job.pages, big.charged_job.copies, big.charged_job.colour_pages) == (100, 5, 100)
    assert big.cost == D("250.0000")   # 5 x 100 colour pages at 0.50


def test_an_account_the_user_may_not_charge_is_flagged_or_charged_to_the_personal_account():
    flagged = settle(job(account_id=20), account=SHARED, allowed=False)
    assert flagged.account_id is None
    assert flagged.problem == ("account not available: alice may not charge this account; "
                               "not charged (offline policy flag)")
    personal = settle(job(account_id=20), account=SHARED, allowed=False,
                      policy=OfflinePolicy.CHARGE_AT_LIMITS)
    assert (personal.account_id, personal.cost) == (10, D("0.8000"))
    assert personal.problem == ("account not available: alice may not charge this account; "
                                "charged to alice's personal account")
    # No usable personal account: nothing to charge even under charge-at-limits.
    from dataclasses import replace

    none = settle(job(account_id=20), account=SHARED, allowed=False,
                  personal=replace(ACCOUNT, disabled=True), policy=OfflinePolicy.CHARGE_AT_LIMITS)
    assert none.account_id is None and "not charged" in none.problem


def test_an_unknown_user_or_a_disabled_one_is_a_problem():
    from dataclasses import replace

    unknown = settle(job(username="mallory"), user=None, account=None, allowed=False,
                     personal=None, policy=OfflinePolicy.CHARGE_AT_LIMITS)
    assert unknown.account_id is None
    assert unknown.problem == "unknown user: mallory; not charged"
    disabled = settle(job(), user=replace(USER, disabled=True))
    assert disabled.account_id is None and disabled.problem.startswith("user disabled: alice")


def test_filters_and_the_balance_are_no_problem_for_a_job_that_printed():
    poor = Account(id=10, name="alice", kind=AccountKind.PERSONAL, balance=D("-5"), restricted=True)
    s = settle_offline(job(copies=3), printer(max_copies=1, grey_only=True), USER, poor,
                       account_allowed=True, personal=poor, limits=LIMITS)
    assert (s.account_id, s.problem) == (10, "")
