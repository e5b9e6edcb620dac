"""Quota schedules: when the next allocation of a daily, weekly or monthly quota falls due.

Allocations fall due at midnight UTC: daily every day, weekly on Mondays, monthly on the 1st.
A schedule that was missed (the server was down) is applied once, not once per missed period,
and the next due time is the next boundary after `now`: users get their allocation late, but
never twice.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from pcnet.domain.model import QuotaPeriod


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(timezone.utc).date(), time(0), tzinfo=timezone.utc)


def next_boundary(period: QuotaPeriod, after: datetime) -> datetime:
    """The first period boundary strictly after `after` (an aware datetime)."""
    day = _midnight(after)
    if period is QuotaPeriod.DAILY:
        return day + timedelta(days=1)
    if period is QuotaPeriod.WEEKLY:
        return day + timedelta(days=7 - day.weekday())
    if period is QuotaPeriod.MONTHLY:
        if day.month == 12:
            return day.replace(year=day.year + 1, month=1, day=1)
        return day.replace(month=day.month + 1, day=1)
    raise ValueError(f"unknown quota period {period!r}")
