"""Quota schedule boundaries and secret hashing."""

from datetime import datetime, timezone

import pytest

from pcnet.domain.model import QuotaPeriod
from pcnet.domain.quotas import next_boundary
from pcnet.domain.secrets import hash_secret, hash_token, new_token, verify_secret

UTC = timezone.utc


@pytest.mark.parametrize("period, after, expected", [
    (QuotaPeriod.DAILY, datetime(2026, 11, 23, 10, 0, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)),
    (QuotaPeriod.DAILY, datetime(2026, 11, 23, 0, 0, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)),
    # 2026-11-23 is a Monday: the next Monday is a week on.
    (QuotaPeriod.WEEKLY, datetime(2026, 11, 23, 0, 0, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
    (QuotaPeriod.WEEKLY, datetime(2026, 11, 26, 15, 0, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
    (QuotaPeriod.MONTHLY, datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    (QuotaPeriod.MONTHLY, datetime(2026, 12, 31, 23, 59, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
])
def test_next_boundary(period, after, expected):
    assert next_boundary(period, after) == expected


def test_boundary_uses_utc_whatever_the_input_zone():
    from datetime import timedelta

    plus_ten = timezone(timedelta(hours=10))
    # 2026-11-24 05:00 at +10 is 2026-11-23 19:00 UTC.
    assert next_boundary(QuotaPeriod.DAILY, datetime(2026, 11, 24, 5, tzinfo=plus_ten)) == datetime(2026, 11, 24, tzinfo=UTC)


def test_secret_hash_is_salted_and_verifies():
    a, b = hash_secret("1234"), hash_secret("1234")
    assert a != b
    assert "1234" not in a
    assert verify_secret("1234", a) and verify_secret("1234", b)
    assert not verify_secret("1235", a)
    assert not verify_secret("1234", None)
    assert not verify_secret("1234", "garbage")


def test_tokens_are_random_and_hashed():
    t1, t2 = new_token(), new_token()
    assert t1 != t2 and len(t1) >= 40
    assert hash_token(t1) == hash_token(t1) != hash_token(t2)
