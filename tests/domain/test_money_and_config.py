"""Money parsing never accepts floats; configuration errors name the file and key."""

from decimal import Decimal

import pytest

from pcnet import config
from pcnet.domain.model import JobLimits
from pcnet.errors import ConfigError, InvalidInput
from pcnet.money import format_money, from_minor, parse_money, to_minor


def test_money_round_trips_through_minor_units():
    assert to_minor(Decimal("1.2345")) == 12345
    assert from_minor(12345) == Decimal("1.2345")
    assert to_minor(Decimal("-0.00005")) == 0  # half-even
    assert format_money(Decimal("2")) == "2.0000"


@pytest.mark.parametrize("bad", [1.5, True, None, "abc", "NaN", "Infinity", "1e20", [1]])
def test_parse_money_refuses_bad_input(bad):
    with pytest.raises(InvalidInput):
        parse_money(bad)


def test_parse_money_accepts_strings_and_ints():
    assert parse_money("1.50") == Decimal("1.5000")
    assert parse_money("-2") == Decimal("-2.0000")
    assert parse_money(3) == Decimal("3.0000")
    assert parse_money("0007.1234") == Decimal("7.1234")
    assert format_money(parse_money("-0")) == "0.0000"


@pytest.mark.parametrize("bad", [
    " 5 ", "5 ", " 5", "1_000", "+5", "1E+3", "1e3", "\u0663", "\uff15", "5\u00a0", "1,50", "1.",
    ".5", "--1", "-", "", "0x10", "1.23456", "12345678901234", "5\n",
])
def test_parse_money_accepts_only_the_documented_form(bad):
    """An amount is exactly ^-?[0-9]{1,13}(\\.[0-9]{1,4})?$ (docs/api.md), not whatever
    Decimal() would take: spaces, '+', '_', exponents and other scripts' digits are refused."""
    with pytest.raises(InvalidInput):
        parse_money(bad)


def test_the_openapi_money_pattern_is_the_parsers():
    import re

    from pcnet.money import MONEY_PATTERN
    from pcnet.web._fields import Money

    pattern = Money().schema()["pattern"]
    assert pattern == f"^{MONEY_PATTERN}$"
    for text in ("1.50", "-2", "1_000", "+5", " 5 ", "1E+3", "\u0663", "1.23456"):
        try:
            parse_money(text)
            accepted = True
        except InvalidInput:
            accepted = False
        assert accepted == bool(re.search(pattern, text)), text


def test_example_config_parses_to_defaults():
    c = config.parse(config.render_example())
    assert c["server"]["http"] == "tcp:9191"
    assert c["protocol"]["missed_beats"] == 3
    assert c.job_limits == JobLimits() and c["jobs"]["offline_policy"] == "flag"


def test_the_example_file_in_etc_lists_every_key_with_its_default():
    from pathlib import Path

    etc = Path(__file__).resolve().parents[2] / "etc" / "pcnet.toml"
    assert etc.read_text() == config.render_example()


def test_job_limits_and_the_offline_policy_are_read_from_jobs():
    c = config.parse("[jobs]\nmax_copies = 50\nmax_pages = 200\nmax_total_pages = 2000\n"
                     "offline_policy = 'charge-at-limits'\n")
    assert c.job_limits == JobLimits(max_copies=50, max_pages=200, max_total_pages=2000)
    assert c["jobs"]["offline_policy"] == "charge-at-limits"


@pytest.mark.parametrize("text, fragment", [
    ("[server]\nhtpp = 'tcp:1'\n", "[server] unknown key 'htpp'"),
    ("[servr]\n", "unknown section [servr]"),
    ("[server]\nhttp = 9191\n", "[server] http: expected str"),
    ("[server]\nhttp = '9191'\n", "[server] http: '9191' must be a Twisted endpoint"),
    ("[database]\nurl = 'mysql://x'\n", "[database] url"),
    ("[protocol]\nmissed_beats = 0\n", "[protocol] missed_beats"),
    ("[protocol]\nmissed_beats = true\n", "[protocol] missed_beats: expected int"),
    ("[protocol]\nauto_approve_networks = ['10.0.0.0/33']\n", "auto_approve_networks"),
    ("[server\n", "not valid TOML"),
    ("[jobs]\nmax_copies = 0\n", "[jobs] max_copies: 0 must be from 1 to 100000"),
    ("[jobs]\nmax_total_pages = 10000001\n", "[jobs] max_total_pages"),
    ("[jobs]\nmax_pages = 5.5\n", "[jobs] max_pages: expected int"),
    ("[jobs]\noffline_policy = 'charge'\n", "[jobs] offline_policy: 'charge' must be one of flag, charge-at-limits"),
])
def test_config_errors_name_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "pcnet.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(path) in e.value.message
    assert fragment in e.value.message


def test_missing_config_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.toml")


def test_sqlite_path_is_relative_to_data_dir(tmp_path):
    path = tmp_path / "pcnet.toml"
    path.write_text("[server]\ndata_dir = 'data'\n[database]\nurl = 'sqlite:///x.db'\n")
    assert config.load(path).database_url == f"sqlite:///{tmp_path}/data/x.db"


@pytest.mark.parametrize("huge", [10 ** 30, "1" + "0" * 12, "9999999999999", Decimal("1e13")])
def test_parse_money_refuses_amounts_out_of_range(huge):
    with pytest.raises(InvalidInput, match="out of range"):
        parse_money(huge)
