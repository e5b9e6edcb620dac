"""The device runner isolates drivers: one that raises, hangs (a start or status that never
fires) or leaks (timers and connections left behind) is logged, marked in error, retried with
backoff, and never stops the other devices. All in memory with task.Clock."""

import pytest
from twisted.internet import defer, task
from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from pcnet.devices import DeviceConfig, DeviceRunner, DeviceState, RunnerPolicy
from pcnet.devices.testing import FakeCore
from pcnet.errors import DriverError
from pcnet.interfaces import IDeviceServices
from tests.fakes.devices import ScriptedDriver

POLICY = RunnerPolicy(start_timeout=5, stop_timeout=2, status_interval=10, status_timeout=3,
                      status_failures=2, initial_backoff=1, max_backoff=8)


def run(*drivers_and_names, policy=POLICY):
    clock = task.Clock()
    core = FakeCore(clock)
    drivers = {d.name: d for d, _ in drivers_and_names}
    devices = [DeviceConfig(name, d.name) for d, name in drivers_and_names]
    runner = DeviceRunner(devices, drivers=drivers, services_for=core.services_for,
                          reactor=clock, policy=policy)
    runner.startService()
    return runner, clock, core


def test_a_good_driver_runs_and_reports_its_status():
    good = ScriptedDriver("good")
    runner, clock, _ = run((good, "printer-1"))
    assert runner.reports()["printer-1"].state is DeviceState.UP
    clock.advance(10)
    assert runner.reports()["printer-1"].status.detail == "fine"


def test_a_driver_that_raises_at_start_is_in_error_and_retried_with_backoff():
    bad = ScriptedDriver("bad", start="raise")
    good = ScriptedDriver("good")
    with capturedLogs() as logs:
        runner, clock, _ = run((bad, "broken"), (good, "fine"))
    report = runner.reports()["broken"]
    assert report.state is DeviceState.ERROR and "start exploded" in report.detail
    assert report.retry_in == 1 and report.failures == 1
    assert any("in error" in str(e.get("log_format", "")) for e in logs)
    clock.advance(1)
    assert len(bad.built) == 2 and runner.reports()["broken"].retry_in == 2
    clock.advance(2)
    clock.advance(4)
    clock.advance(8)
    clock.advance(8)
    assert runner.reports()["broken"].retry_in == 8  # capped at max_backoff
    assert all(d.stopped for d in bad.built[:-1])
    assert runner.reports()["fine"].state is DeviceState.UP


def test_a_start_that_never_fires_times_out_and_is_retried():
    hanging = ScriptedDriver("hang", start="hang")
    runner, clock, _ = run((hanging, "stuck"))
    assert runner.reports()["stuck"].state is DeviceState.STARTING
    clock.advance(5)
    report = runner.reports()["stuck"]
    assert report.state is DeviceState.ERROR and "did not answer in time" in report.detail
    assert hanging.built[0].stopped
    clock.advance(1)
    assert len(hanging.built) == 2


def test_a_status_that_hangs_restarts_the_driver_after_the_configured_failures():
    hanging = ScriptedDriver("hang", status="hang")
    runner, clock, _ = run((hanging, "quiet"))
    clock.advance(10)  # first check asked
    clock.advance(3)   # ... and timed out: 1 of 2
    assert runner.reports()["quiet"].state is DeviceState.UP
    clock.advance(10)
    clock.advance(3)   # 2 of 2: restart
    report = runner.reports()["quiet"]
    assert report.state is DeviceState.ERROR and "status" in report.detail
    clock.advance(1)
    assert len(hanging.built) == 2


def test_a_status_that_is_not_a_device_status_counts_as_a_failure():
    liar = ScriptedDriver("liar", status=lambda d: defer.succeed("all good"))
    runner, clock, _ = run((liar, "liar"))
    for _ in range(2):
        clock.advance(10)
    assert runner.reports()["liar"].state is DeviceState.ERROR


def test_a_driver_that_fails_to_build_is_in_error_and_retried():
    bad = ScriptedDriver("bad", build="raise")
    runner, clock, _ = run((bad, "nope"))
    assert runner.reports()["nope"].state is DeviceState.ERROR
    assert "build exploded" in runner.reports()["nope"].detail


def test_timers_a_driver_leaves_behind_after_stop_are_cancelled_and_logged():
    fired = []

    def leaky_start(device):
        device.reactor.callLater(100, fired.append, "leaked timer fired")
        raise RuntimeError("start exploded after scheduling a timer")

    leaky = ScriptedDriver("leaky", start=leaky_start)
    with capturedLogs() as logs:
        runner, clock, _ = run((leaky, "leaky"))
    assert any("left" in str(e.get("log_format", "")) for e in logs)
    clock.advance(200)
    assert fired == []


def test_connections_a_driver_leaves_open_are_closed_after_stop():
    reactor = MemoryReactorClock()
    leaky = ScriptedDriver("leaky", start=lambda d: (
        d.reactor.connectTCP("10.0.0.9", 7778, ClientFactory()), defer.Deferred())[1])
    core = FakeCore(reactor)
    runner = DeviceRunner([DeviceConfig("r", "leaky")], drivers={"leaky": leaky},
                          services_for=core.services_for, reactor=reactor, policy=POLICY)
    runner.startService()
    assert len(reactor.connectors) == 1
    reactor.advance(5)  # start timed out: stopped and swept
    assert reactor.connectors[0]._disconnected


def test_a_stopped_driver_can_no_longer_call_its_services():
    kept = {}

    def remember(device):
        kept["services"] = device.services
        raise RuntimeError("bye")

    driver = ScriptedDriver("d", start=remember)
    runner, clock, core = run((driver, "d1"))
    verifyObject(IDeviceServices, kept["services"])
    failure = []
    kept["services"].authenticate_card("1").addErrback(failure.append)
    assert failure and failure[0].check(DriverError)
    assert core.calls_of("authenticate_card") == []


def test_a_stop_that_hangs_does_not_hold_up_the_runner():
    driver = ScriptedDriver("d", stop="hang")
    runner, clock, _ = run((driver, "d1"))
    d = runner.stopService()
    assert not d.called
    clock.advance(2)
    assert d.called


def test_a_device_whose_driver_is_not_installed_is_reported_in_error():
    runner, _, _ = run()
    runner.add(DeviceConfig("ghost", "no-such-driver"))
    report = runner.reports()["ghost"]
    assert report.state is DeviceState.ERROR and "not installed" in report.detail


def test_backoff_policy_doubles_to_its_ceiling():
    p = RunnerPolicy(initial_backoff=2, max_backoff=30)
    assert [p.backoff(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    with pytest.raises(ValueError):
        RunnerPolicy(status_failures=0)
