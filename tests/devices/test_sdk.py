"""The device SDK's pieces in memory: settings, records, finding drivers, the fake core against
its interface, the asyncio bridge, and Printer-MIB reading of raw values."""

import asyncio
import sys
import threading
import textwrap
from decimal import Decimal

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from pcnet.config import REQUIRED
from pcnet.devices import (
    DeviceConfig,
    Usage,
    configure_device,
    find_drivers,
    parse_settings,
    setting,
)
from pcnet.devices._asyncio import AsyncioBridge
from pcnet.devices.printer_mib import error_bits, read_poll, poll_plan, supply
from pcnet.devices.testing import FakeCore, FakeDeviceServices, eventually
from pcnet.errors import ConfigError, InvalidInput
from pcnet.interfaces import IDeviceDriverFactory, IDeviceServices

SCHEMA = (
    setting("host", str, REQUIRED, "where"),
    setting("port", int, 7778, "port", check=lambda v: None if 0 < v < 65536 else "bad port"),
    setting("secret", str, "", "a key", secret=True),
)


def test_settings_are_typed_defaulted_and_secrets_redacted():
    s = parse_settings(SCHEMA, {"host": "reader-1", "secret": "hunter2hunter2"}, where="t")
    assert (s.host, s.port, s["secret"]) == ("reader-1", 7778, "hunter2hunter2")
    assert s.redacted() == {"host": "reader-1", "port": 7778, "secret": "(secret)"}
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize("raw,message", [
    ({}, "t: host: required"),
    ({"host": "h", "port": "7778"}, "t: port: expected int"),
    ({"host": "h", "port": 0}, "t: port: 0 bad port"),
    ({"host": "h", "prot": 1}, "unknown setting 'prot'"),
    ({"host": "h", "port": True}, "expected int"),
])
def test_bad_settings_are_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(SCHEMA, raw, where="t")


def test_a_bad_secret_value_is_never_shown():
    with pytest.raises(ConfigError) as e:
        parse_settings(SCHEMA, {"host": "h", "secret": 1234567}, where="t")
    assert "1234567" not in str(e.value)


def test_device_names_are_checked():
    with pytest.raises(ConfigError):
        DeviceConfig("bad name!", "snmp")


def test_usage_refuses_impossible_figures():
    with pytest.raises(InvalidInput):
        Usage("short", "copy", 1, 1)
    with pytest.raises(InvalidInput):
        Usage("uuid-0000001", "print", 1, 1)
    with pytest.raises(InvalidInput):
        Usage("uuid-0000001", "copy", 1, 2, colour_pages=3)


def test_the_fake_core_provides_the_device_services():
    core = FakeCore()
    services = core.services_for(DeviceConfig("d", "x", printer_id=1))
    assert isinstance(services, FakeDeviceServices)
    verifyObject(IDeviceServices, services)


def test_built_in_drivers_are_found_and_provide_the_interface():
    drivers = find_drivers()
    assert {"snmp", "card-reader", "copy-session", "mfd"} <= set(drivers)
    for factory in drivers.values():
        verifyObject(IDeviceDriverFactory, factory)


def test_a_broken_or_duplicate_plugin_is_left_out_and_the_others_load(tmp_path, monkeypatch):
    pkg = tmp_path / f"vendor_drivers_{id(tmp_path):x}"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(textwrap.dedent("""
        from twisted.plugin import IPlugin
        from zope.interface import implementer
        from pcnet.interfaces import IDeviceDriverFactory

        @implementer(IPlugin, IDeviceDriverFactory)
        class Good:
            name, version, description, settings = "good", "1", "fine", ()
            def build(self, device, services, reactor):
                return None

        good = Good()
    """))
    (pkg / "bad.py").write_text(textwrap.dedent("""
        from twisted.plugin import IPlugin
        from zope.interface import implementer
        from pcnet.interfaces import IDeviceDriverFactory

        @implementer(IPlugin, IDeviceDriverFactory)
        class NoBuild:
            name, version, description, settings = "Bad Name", "1", "broken", ()

        bad = NoBuild()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    package = __import__(pkg.name)
    found = find_drivers(package)
    assert list(found) == ["good"]
    sys.modules.pop(pkg.name, None)


def test_configure_device_names_an_uninstalled_driver():
    with pytest.raises(ConfigError, match="no device driver 'nope' is installed"):
        configure_device(find_drivers(), "d", "nope", {})


# --- the asyncio bridge (thread mode: the suite runs on the default reactor) ----------------------


@pytest_twisted.ensureDeferred
async def test_bridge_runs_a_coroutine_on_its_loop_and_delivers_in_the_reactor_thread():
    from twisted.internet import reactor

    bridge = AsyncioBridge(reactor)
    try:
        async def where():
            await asyncio.sleep(0)
            return asyncio.get_running_loop() is bridge.loop

        assert bridge.mode == "thread" and await bridge.run(where) is True

        async def boom():
            raise ValueError("from asyncio")

        with pytest.raises(ValueError, match="from asyncio"):
            await bridge.run(boom)

        started, cancelled = threading.Event(), threading.Event()

        async def forever():
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        d = bridge.run(forever)
        await eventually(started.is_set)
        d.cancel()
        with pytest.raises(defer.CancelledError):
            await d
        await eventually(cancelled.is_set)  # the coroutine itself was cancelled on its loop
        never = bridge.run(forever)
        never.cancel()  # before it started: it is never made, no "never awaited" warning
        with pytest.raises(defer.CancelledError):
            await never
    finally:
        bridge.close()
    assert bridge._thread is None


# --- Printer-MIB reading ------------------------------------------------------------------------


def test_error_bits_are_read_most_significant_bit_first():
    assert error_bits(bytes.fromhex("2000")) == ("lowToner",)
    assert error_bits(bytes.fromhex("8001")) == ("lowPaper", "bit 15")
    assert error_bits(bytes.fromhex("0c")) == ("doorOpen", "jammed")
    assert error_bits(b"") == ()


@pytest.mark.parametrize("level,capacity,percent,remaining", [
    (55, 100, 55, "percent"), (1060, 5300, 20, "percent"), (-3, 100, None, "some"),
    (-2, 100, None, "unknown"), (-1, 100, None, "other"), (100, -2, None, "capacity unknown"),
    (120, 100, 100, "percent"), (None, None, None, "unknown"),
])
def test_supply_levels_respect_rfc3805_special_values(level, capacity, percent, remaining):
    s = supply(1, b"Black Toner", 3, level, capacity)
    assert (s.percent, s.remaining, s.kind) == (percent, remaining, "toner")


def test_a_poll_with_nothing_reported_says_so():
    plan = poll_plan(1, ())
    reading = read_poll(plan, {n: None for n in plan.scalars}, {})
    assert reading.status.state.value == "unknown" and reading.counters.life is None
    assert "hrDeviceStatus" in reading.status.not_reported


def test_the_fake_core_charges_usage_once_per_uuid():
    core = FakeCore()
    alice = core.add_user("alice", balance="1.00")
    services = core.services_for(DeviceConfig("d", "x", printer_id=1))
    usage = Usage("uuid-0000001", "copy", alice.id, 3)
    first = services.record_usage(usage)
    again = services.record_usage(usage)
    assert not first.result.repeated and again.result.repeated
    assert core.account_of(alice).balance == Decimal("0.7000")
