"""The `snmp` driver against a real SNMP agent (snmpsim) serving recordings of real printers.

The expected values are those of ../shared/testdata/README.md. Poll timing is driven by hand
(`poll()`), the agent is real; missed-poll counting uses a port where nothing answers.
"""

import pytest
import pytest_twisted
from twisted.internet import reactor

from pcnet.devices import DeviceState, configure_device, find_drivers
from pcnet.devices.testing import FakeCore
from pcnet.devices.testing.snmpsim import free_udp_port

from .conftest import V3

pytestmark = pytest.mark.integration


def snmp_device(agent_port, name="printer-1", **settings):
    drivers = find_drivers()
    # Generous timeouts: the machine running the suite may be busy, and a miss here is not
    # what these tests are about (the missed-poll tests set their own).
    settings = {"timeout": 5, "retries": 2, **settings}
    config = configure_device(drivers, name, "snmp", {"host": "127.0.0.1", "port": agent_port,
                                                      **settings}, printer_id=7)
    core = FakeCore()
    device = drivers["snmp"].build(config, core.services_for(config), reactor)
    return device, core


async def one_poll(device):
    await device.start()  # the first poll happens at start
    try:
        return device.reading, await device.status()
    finally:
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_sharp_recording_gives_its_known_status_counters_and_supplies(snmp_agent):
    device, core = snmp_device(snmp_agent.port, community="sharp")
    reading, status = await one_poll(device)
    assert status.state is DeviceState.WARNING
    assert status.facts["hrDeviceStatus"] == "warning"
    assert status.error_states == ("lowToner",)
    assert status.facts["hrPrinterDetectedErrorState"] == "2000"
    assert reading.counters.life == 121104
    supplies = {s.description: s for s in reading.supplies}
    assert {k: supplies[k].percent for k in ("Cyan Toner", "Magenta Toner", "Yellow Toner",
                                             "Black Toner")} == {
        "Cyan Toner": 55, "Magenta Toner": 19, "Yellow Toner": 40, "Black Toner": 34}
    assert supplies["Black Toner"].kind == "toner"
    # RFC 3805: a capacity of -2 is unknown, so no percentage is made up for the waste toner.
    assert (supplies["Waste Toner"].percent, supplies["Waste Toner"].remaining) == (None, "capacity unknown")
    assert (supplies["Fusing Unit"].level, supplies["Fusing Unit"].remaining) == (-2, "unknown")
    # The Sharp enterprise counters split the life count into mono and colour.
    detail = reading.counters.detail
    assert detail["total.mono"] + detail["total.colour"] == 121104
    assert (detail["copy.mono"], detail["copy.colour"]) == (37485, 1319)
    assert (detail["print.mono"], detail["print.colour"]) == (53631, 28583)
    assert reading.alerts == ()
    # ... and all of it was reported through the device's services.
    reports = core.reports["printer-1"]
    assert reports.statuses[-1].state is DeviceState.WARNING
    assert reports.counters[-1].life == 121104
    assert len(reports.supplies[-1]) == 14 and reports.alerts[-1] == []


@pytest_twisted.ensureDeferred
async def test_xerox_recording_says_status_and_counter_are_not_reported(snmp_agent):
    device, core = snmp_device(snmp_agent.port, community="xerox")
    reading, status = await one_poll(device)
    assert status.state is DeviceState.UNKNOWN
    assert set(status.not_reported) == {"hrDeviceStatus", "hrPrinterStatus",
                                        "hrPrinterDetectedErrorState"}
    assert "not reported" in status.detail
    assert reading.counters.life is None
    assert reading.counters.not_reported == ("prtMarkerLifeCount",)
    assert reading.counters.detail == {}
    toner = {s.description.split(",")[0]: s.percent for s in reading.supplies if "Toner," in s.description}
    assert toner == {"Black Toner": 20, "Cyan Toner": 66, "Magenta Toner": 72, "Yellow Toner": 60}


@pytest_twisted.ensureDeferred
async def test_alerts_error_bits_and_special_supply_levels(snmp_agent):
    device, core = snmp_device(snmp_agent.port, community="alerting")
    reading, status = await one_poll(device)
    assert status.state is DeviceState.ERROR
    assert status.error_states == ("doorOpen", "jammed")
    assert [(a.severity, a.group, a.code, a.description) for a in reading.alerts] == [
        ("critical", "mediaPath", "jam", "Paper jam in tray 2"),
        ("warning", "markerSupplies", "markerTonerAlmostEmpty", "Black toner low"),
    ]
    supplies = {s.description: s for s in reading.supplies}
    assert (supplies["Cyan Toner"].percent, supplies["Cyan Toner"].remaining) == (None, "some")
    assert supplies["Magenta Toner"].remaining == "other"
    assert supplies["Yellow Toner"].remaining == "capacity unknown"
    assert core.reports["printer-1"].alerts[-1][0].code == "jam"


@pytest.mark.parametrize("settings", [
    {"version": "1", "community": "sharp"},
    {"version": "3", "user": V3.user, "auth_key": V3.auth_key, "priv_key": V3.priv_key,
     "auth_protocol": "SHA", "priv_protocol": "AES", "context": "sharp"},
], ids=["v1", "v3-authpriv"])
@pytest_twisted.ensureDeferred
async def test_v1_and_v3_with_auth_and_privacy_read_the_same_values(snmp_agent, settings):
    device, _ = snmp_device(snmp_agent.port, **settings)
    reading, status = await one_poll(device)
    assert reading.counters.life == 121104
    assert status.error_states == ("lowToner",)
    assert len(reading.supplies) == 14


@pytest_twisted.ensureDeferred
async def test_a_wrong_v3_key_gets_no_answer_and_counts_as_a_missed_poll(snmp_agent):
    """An SNMPv3 agent drops a request whose digest is wrong; the poller does not pretend it
    knows why, and never shows the key."""
    device, _ = snmp_device(snmp_agent.port, version="3", user=V3.user, auth_key="not-the-key",
                            priv_key=V3.priv_key, context="sharp", timeout=0.3, retries=0,
                            down_after=1)
    reading, status = await one_poll(device)
    assert reading is None and device.missed == 1
    assert status.state is DeviceState.DOWN
    assert "not-the-key" not in repr(device.target)


@pytest_twisted.ensureDeferred
async def test_printer_is_down_only_after_the_configured_missed_polls(snmp_agent):
    device, core = snmp_device(free_udp_port(), community="sharp", timeout=0.2, retries=0,
                               down_after=3, poll_interval=3600)
    await device.start()
    try:
        assert device.missed == 1 and (await device.status()).state is not DeviceState.DOWN
        await device.poll()
        assert device.missed == 2 and (await device.status()).state is not DeviceState.DOWN
        await device.poll()
        status = await device.status()
        assert device.missed == 3 and status.state is DeviceState.DOWN
        assert "3 polls missed" in status.detail
        assert core.reports["printer-1"].statuses[-1].state is DeviceState.DOWN
    finally:
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_an_answer_after_missed_polls_brings_the_printer_back(snmp_agent):
    device, core = snmp_device(snmp_agent.port, community="sharp", poll_interval=3600)
    await device.start()
    try:
        device.missed = 5
        await device.poll()
        assert device.missed == 0 and (await device.status()).state is DeviceState.WARNING
    finally:
        await device.stop()


def test_settings_hide_secrets_and_refuse_unknown_keys():
    from pcnet.errors import ConfigError

    drivers = find_drivers()
    config = configure_device(drivers, "p", "snmp", {"host": "h", "community": "s3cret"})
    assert "s3cret" not in repr(config) and config.settings.community == "s3cret"
    with pytest.raises(ConfigError, match="unknown setting 'comunity'"):
        configure_device(drivers, "p", "snmp", {"host": "h", "comunity": "x"})
    with pytest.raises(ConfigError, match="host: required"):
        configure_device(drivers, "p", "snmp", {})
    with pytest.raises(ConfigError) as e:
        configure_device(drivers, "p", "snmp", {"host": "h", "community": 5})
    assert "5" not in str(e.value).split("community")[1]


@pytest.mark.parametrize("community", ["sharp", "alerting", "xerox"])
@pytest_twisted.ensureDeferred
async def test_light_polls_between_full_ones_read_the_same_values(snmp_agent, community):
    """Between full polls only the supplies' levels are asked for, and the alert table only
    when its probe finds rows; what the driver reads is the same as a full poll's."""
    device, _ = snmp_device(snmp_agent.port, community=community, poll_interval=3600,
                            describe_every=10)
    await device.start()
    try:
        full = device.reading
        light = await device.poll()
        assert device._polls == 2 and device._meta is not None
        assert light.supplies == full.supplies and light.alerts == full.alerts
        assert light.counters == full.counters and light.status.state is full.status.state
    finally:
        await device.stop()


def test_light_plan_asks_for_levels_and_one_alert_probe():
    from pcnet.devices.printer_mib import poll_plan

    light = poll_plan(1, (), supplies=14)
    assert list(light.columns) == ["supply.level"] and light.repetitions == 15
    assert list(light.probes) == ["alert.probe"]


ASYNCIO_REACTOR_POLL = """
import asyncio, sys
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
from twisted.internet import asyncioreactor
asyncioreactor.install(loop)
from twisted.internet import defer, reactor
from pcnet.devices import configure_device, find_drivers
from pcnet.devices.testing import FakeCore

async def main():
    drivers = find_drivers()
    config = configure_device(drivers, "p", "snmp", {
        "host": "127.0.0.1", "port": int(sys.argv[1]), "version": "3", "user": sys.argv[2],
        "auth_key": sys.argv[3], "priv_key": sys.argv[4], "context": "sharp", "timeout": 5})
    device = drivers["snmp"].build(config, FakeCore().services_for(config), reactor)
    await device.start()
    print(device._poller.bridge.mode, device.reading.counters.life)
    await device.stop()

d = defer.ensureDeferred(main())
d.addErrback(lambda f: print(f.getTraceback()))
d.addBoth(lambda _: reactor.stop())
reactor.run()
"""


def test_v3_polls_on_the_asyncio_reactors_own_loop(snmp_agent, tmp_path):
    """Under Twisted's asyncio reactor the bridge runs pysnmp on the reactor's loop (no
    thread); installed the way DEPENDENCIES.md says (the loop made current first)."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "poll.py"
    script.write_text(ASYNCIO_REACTOR_POLL)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(script), str(snmp_agent.port), V3.user, V3.auth_key,
                          V3.priv_key], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().splitlines()[-1] == "reactor loop 121104", out.stdout + out.stderr


@pytest_twisted.ensureDeferred
async def test_v3_polls_on_a_loop_thread_under_the_default_reactor(snmp_agent):
    device, _ = snmp_device(snmp_agent.port, version="3", user=V3.user, auth_key=V3.auth_key,
                            priv_key=V3.priv_key, context="sharp")
    await device.start()
    try:
        assert device._poller.bridge.mode == "thread"
        assert device.reading.counters.life == 121104
    finally:
        await device.stop()


@pytest_twisted.ensureDeferred
async def test_changes_of_state_and_new_alerts_are_logged_once(snmp_agent):
    from twisted.logger import capturedLogs

    device, _ = snmp_device(snmp_agent.port, community="alerting", poll_interval=3600)
    with capturedLogs() as events:
        await device.start()
        await device.poll()
        await device.stop()
    lines = [e["log_format"].format(**e) for e in events if e.get("log_namespace") == "drivers.snmp"]
    assert sum("is error" in line for line in lines) == 1
    assert sum("alert critical jam" in line for line in lines) == 1
