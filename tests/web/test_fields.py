"""The validation layer on its own: each field spec accepts what it documents and refuses the
rest with an `InvalidInput` naming the field."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcnet.domain.model import QuotaPeriod
from pcnet.errors import InvalidInput
from pcnet.web._fields import (
    Boolean,
    Choice,
    Id,
    Integer,
    InvalidField,
    ListOf,
    MapOf,
    Money,
    Object,
    Pattern,
    Ref,
    RefValue,
    String,
    Timestamp,
    Uuid,
    parse_json,
    parse_query,
)


def refused(spec, value, name="f"):
    with pytest.raises(InvalidInput) as info:
        spec.parse(value, name)
    return info.value


def test_string_refuses_non_strings_controls_and_surrounding_space():
    s = String(max_length=5)
    assert s.parse("abc", "f") == "abc"
    for bad in (1, None, [], {}, True):
        assert refused(s, bad).message.startswith("f: ")
    assert "control character" in refused(s, "a\x00b").message
    assert "control character" in refused(s, "a\nb").message
    assert "at most 5" in refused(s, "abcdef").message
    assert "white space" in refused(s, " ab").message
    assert "surrogate" in refused(s, "\ud800").message


def test_multiline_string_allows_newlines_but_not_nul():
    s = String(multiline=True, strip_check=False)
    assert s.parse("line 1\nline 2\n", "c") == "line 1\nline 2\n"
    assert "control" in refused(s, "x\x00").message


def test_integer_refuses_bools_floats_and_out_of_range():
    i = Integer(minimum=0, maximum=10)
    assert i.parse(3, "pages") == 3
    assert "expected an integer" in refused(i, True, "pages").message
    assert "expected an integer" in refused(i, 1.0, "pages").message
    assert "expected an integer" in refused(i, "3", "pages").message
    assert "out of range" in refused(i, -1, "pages").message
    assert "out of range" in refused(i, 11, "pages").message
    assert i.from_text("7", "limit") == 7
    with pytest.raises(InvalidInput, match="limit: expected an integer"):
        i.from_text("7x", "limit")
    with pytest.raises(InvalidInput, match="limit"):
        i.from_text("9" * 200, "limit")


def test_id_is_positive_and_fits_a_64_bit_column():
    assert Id().parse(1, "id") == 1
    refused(Id(), 0)
    refused(Id(), 2 ** 63)


def test_money_takes_strings_and_integers_never_floats():
    m = Money()
    assert m.parse("1.50", "amount") == Decimal("1.5000")
    assert m.parse(2, "amount") == Decimal("2.0000")
    assert m.parse("-0.0001", "amount") == Decimal("-0.0001")
    assert "not a number with a fraction" in refused(m, 1.5, "amount").message
    assert refused(m, 1.5, "amount").message.startswith("amount: ")
    assert "4 decimal places" in refused(m, "0.00001").message
    assert "not an amount" in refused(m, "abc").message
    assert "not an amount" in refused(m, "NaN").message
    assert "above the maximum" in refused(m, "10000000000").message
    for written in (" 5 ", "1_000", "+5", "1E+3", "1e10", "\u0663", "5\n"):
        assert "not an amount" in refused(m, written).message, written
    refused(m, True)
    refused(m, 10 ** 30)
    refused(m, [])
    refused(m, "1" * 100)


def test_money_bounds_and_nonzero():
    assert "below the minimum" in refused(Money(minimum=Decimal(0)), "-1").message
    assert "must not be zero" in refused(Money(nonzero=True), "0.00").message


def test_choice_lists_the_allowed_values():
    c = Choice(QuotaPeriod)
    assert c.parse("weekly", "period") is QuotaPeriod.WEEKLY
    e = refused(c, "fortnightly", "period")
    assert e.message == "period: 'fortnightly' is not one of daily, weekly, monthly"
    refused(c, 1, "period")


def test_uuid_is_normalised():
    u = Uuid()
    assert u.parse("0F8FAD5B-D9CB-469F-A165-70867728950E", "uuid") == "0f8fad5b-d9cb-469f-a165-70867728950e"
    refused(u, "not-a-uuid")


def test_timestamp_needs_a_zone_but_takes_a_plain_date_as_utc():
    t = Timestamp()
    assert t.parse("2025-01-31T08:00:00Z", "since").isoformat() == "2025-01-31T08:00:00+00:00"
    assert t.parse("2025-01-31T09:00:00+01:00", "since").isoformat() == "2025-01-31T08:00:00+00:00"
    assert t.parse("2025-01-31", "since").isoformat() == "2025-01-31T00:00:00+00:00"
    assert "time zone" in refused(t, "2025-01-31T08:00:00", "since").message
    refused(t, "yesterday", "since")


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:59",
                                  "0001-01-01T03:00:00+23:59", "2025-01-31T08:00:00+24:00"])
def test_timestamps_that_fall_outside_the_calendar_in_utc_are_refused(text):
    """An offset pushing a time before year 1 or after 9999 once in UTC is an input error, not
    an OverflowError (which was a 500)."""
    message = refused(Timestamp(), text, "since").message
    assert message.startswith("since: ")


def test_ref_in_json_and_in_urls():
    r = Ref("user")
    assert r.parse(5, "user") == 5
    assert r.parse("ann", "user") == RefValue("ann")
    assert r.parse("123", "user") == RefValue("123")     # a JSON string is a name
    assert r.from_text("123", "user") == 123               # in a URL digits are an id
    assert r.from_text("name:123", "user") == RefValue("123")
    assert r.from_text("ann", "user") == RefValue("ann")
    refused(r, True)
    refused(r, 1.0)
    refused(r, 0)


def test_pattern_must_compile():
    assert Pattern().parse("^secret", "p") == "^secret"
    assert "not a valid regular expression" in refused(Pattern(), "([a-", "p").message


def test_object_refuses_unknown_fields_and_names_nested_paths():
    spec = Object({"a": Integer(required=True), "inner": Object({"b": ListOf(Integer())}),
                   "d": Boolean(default=False)})
    assert spec.parse({"a": 1}, "") == {"a": 1, "d": False}
    e = refused(spec, {"a": 1, "typo": 2}, "")
    assert isinstance(e, InvalidField) and e.field == "typo"
    assert "unknown field" in e.message
    assert refused(spec, {}, "").field == "a"
    assert refused(spec, {"a": 1, "inner": {"b": [1, "x"]}}, "").field == "inner.b[1]"
    assert refused(spec, {"a": 1, "inner": {"c": 1}}, "").field == "inner.c"


def test_object_with_min_fields_refuses_an_empty_patch():
    spec = Object({"a": Integer()}, min_fields=1)
    assert "at least one of" in refused(spec, {}, "").message


def test_list_and_map_limits():
    assert "at most 2" in refused(ListOf(Integer(), max_items=2), [1, 2, 3]).message
    assert "listed twice" in refused(ListOf(String(), unique=True), ["a", "a"]).message
    sizes = MapOf(String(min_length=1, max_length=4), Integer(), max_items=1)
    assert sizes.parse({"A3": 1}, "sizes") == {"A3": 1}
    refused(sizes, {"A3": 1, "A4": 2})
    assert refused(sizes, {"A3": "x"}, "sizes").field == "sizes.A3"


def test_parse_json_refuses_ambiguous_json():
    assert parse_json(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b'{"a": NaN}', b'{"a": 1, "a": 2}', b"\xff", b"[" * 100_000, b"1" * 5000):
        with pytest.raises(InvalidInput):
            parse_json(bad)


def test_parse_query_refuses_unknown_and_repeated_parameters():
    spec = {"limit": Integer(minimum=1, maximum=10, default=5), "on": Boolean()}
    assert parse_query({}, spec) == {"limit": 5}
    assert parse_query({b"limit": [b"3"], b"on": [b"true"]}, spec) == {"limit": 3, "on": True}
    with pytest.raises(InvalidInput, match="lmit: unknown query parameter"):
        parse_query({b"lmit": [b"3"]}, spec)
    with pytest.raises(InvalidInput, match="limit: given more than once"):
        parse_query({b"limit": [b"3", b"4"]}, spec)
    with pytest.raises(InvalidInput, match="limit: expected an integer"):
        parse_query({b"limit": [b"x"]}, spec)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@given(json_values)
def test_specs_only_ever_raise_invalid_input(value):
    """Whatever JSON arrives, a spec returns a value or raises InvalidInput (never a crash)."""
    specs = [String(), Integer(), Money(), Boolean(), Choice(QuotaPeriod), Uuid(), Timestamp(),
             Ref("user"), ListOf(Money()), MapOf(String(max_length=8), Integer()), Pattern(),
             Object({"a": Integer(), "b": ListOf(String())})]
    for spec in specs:
        try:
            spec.parse(value, "f")
        except InvalidInput as e:
            assert e.message


def test_nullable_specs_say_so_in_their_schema():
    from pcnet.web._fields import Email

    for spec in (Money(nullable=True), Integer(nullable=True), Ref("user", nullable=True),
                 String(nullable=True), Email(nullable=True), Object({}, nullable=True)):
        schema = spec.schema()
        assert "null" in schema.get("type", []) or {"type": "null"} in schema.get("oneOf", []), schema
