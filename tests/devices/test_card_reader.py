"""The `card-reader` driver against the simulated reader over real loopback TCP: a swipe
releases the holder's held jobs to the reader's printer; unknown cards, no jobs, a swipe during
a release, dropped connections and noise from the reader are handled."""

import pytest_twisted
from twisted.internet import defer, reactor

from pcnet.devices import DeviceState, configure_device, find_drivers
from pcnet.devices.testing import FakeCore, eventually
from pcnet.devices.testing.fake_reader import FakeReader
from pcnet.errors import DeviceUnavailable

PRINTER = 3


class Rig:
    def __init__(self, **settings):
        self.reader = FakeReader(reactor)
        self.port = self.reader.listen()
        drivers = find_drivers()
        self.config = configure_device(drivers, "hall-reader", "card-reader",
                                       {"host": "127.0.0.1", "port": self.port,
                                        "reconnect_initial": 0.05, "reconnect_max": 0.2, **settings},
                                       printer_id=PRINTER)
        self.core = FakeCore()
        self.device = drivers["card-reader"].build(self.config, self.core.services_for(self.config),
                                                   reactor)

    async def __aenter__(self):
        await self.device.start()
        await eventually(lambda: b"v" in self.reader.commands)
        return self

    async def __aexit__(self, *exc):
        await self.device.stop()
        await self.reader.close()


@pytest_twisted.ensureDeferred
async def test_reader_is_asked_its_version_and_reported_up():
    async with Rig() as rig:
        await eventually(lambda: rig.device.link.version is not None)
        status = await rig.device.status()
        assert status.state is DeviceState.UP and "v1.0-fake" in status.detail


@pytest_twisted.ensureDeferred
async def test_a_swipe_releases_the_holders_jobs_to_the_readers_printer_and_beeps():
    async with Rig() as rig:
        alice = rig.core.add_user("alice", card="04A1B2")
        jobs = [rig.core.hold_job(alice, printer_id=PRINTER) for _ in range(2)]
        elsewhere = rig.core.hold_job(alice, printer_id=PRINTER + 1)
        rig.reader.swipe("04A1B2")
        await eventually(lambda: len(rig.core.released()) == 2)
        assert {j.uuid for j in rig.core.released()} == set(jobs)
        assert rig.core.jobs[elsewhere].status == "held"
        await eventually(lambda: b"b" in rig.reader.commands)
        assert b"e" not in rig.reader.commands


@pytest_twisted.ensureDeferred
async def test_an_unknown_card_signals_an_error_and_releases_nothing():
    async with Rig() as rig:
        rig.reader.swipe("DEADBEEF", end=b"\n")
        await eventually(lambda: b"e" in rig.reader.commands)
        assert rig.core.calls_of("authenticate_card")[0][2] == "DEADBEEF"
        assert rig.core.calls_of("release_job") == []


@pytest_twisted.ensureDeferred
async def test_a_holder_who_cannot_afford_the_job_gets_an_error():
    async with Rig() as rig:
        bob = rig.core.add_user("bob", card="77", balance="0.05")
        rig.core.hold_job(bob, printer_id=PRINTER, cost="1.00")
        rig.reader.swipe("77")
        await eventually(lambda: b"e" in rig.reader.commands)
        assert rig.core.released() == []


@pytest_twisted.ensureDeferred
async def test_a_second_swipe_during_the_release_is_ignored_and_nothing_is_released_twice():
    async with Rig() as rig:
        alice = rig.core.add_user("alice", card="11")
        job = rig.core.hold_job(alice, printer_id=PRINTER)
        gate = defer.Deferred()
        release = rig.device.services.release_job
        # The release takes a while (a slow print server): it waits for the gate.
        rig.device.services.release_job = lambda u, j: gate.addCallback(lambda _: release(u, j))
        rig.reader.swipe("11")
        await eventually(lambda: rig.core.calls_of("held_jobs"))
        rig.reader.swipe("11")
        await eventually(lambda: rig.device.ignored == 1)
        gate.callback(None)
        await eventually(lambda: rig.core.jobs[job].status == "released")
        assert len(rig.core.calls_of("held_jobs")) == 1
        assert len(rig.core.calls_of("release_job")) == 1


@pytest_twisted.ensureDeferred
async def test_a_dropped_connection_is_reported_down_and_reconnected():
    async with Rig() as rig:
        rig.reader.drop()
        await eventually(lambda: not rig.device.link.connected)
        assert (await rig.device.status()).state is DeviceState.DOWN
        await eventually(lambda: rig.reader.accepted >= 2 and rig.device.link.connected)
        alice = rig.core.add_user("alice", card="55")
        rig.core.hold_job(alice, printer_id=PRINTER)
        rig.reader.swipe("55")
        await eventually(lambda: len(rig.core.released()) == 1)


@pytest_twisted.ensureDeferred
async def test_a_reader_that_goes_away_is_reconnected_when_it_comes_back():
    async with Rig() as rig:
        await rig.reader.close()
        await eventually(lambda: not rig.device.link.connected)
        rig.reader.listen(rig.port)
        await eventually(lambda: rig.device.link.connected, timeout=5)
        assert rig.device.link.connections == 2


@pytest_twisted.ensureDeferred
async def test_noise_and_overlong_lines_from_the_reader_are_not_card_numbers():
    async with Rig() as rig:
        rig.reader.send_raw(b"\r\n   \r\n\x01\x02\r\n")
        rig.reader.send_raw(b"9" * 300 + b"\r\n")
        await eventually(lambda: rig.reader.accepted >= 2, timeout=5)
        assert rig.core.calls_of("authenticate_card") == []


@pytest_twisted.ensureDeferred
async def test_a_core_that_cannot_answer_gives_an_error_signal_not_a_crash():
    async with Rig() as rig:
        rig.core.add_user("alice", card="66")
        rig.core.fail("authenticate_card", DeviceUnavailable("the server is busy"))
        rig.reader.swipe("66")
        await eventually(lambda: b"e" in rig.reader.commands)
        assert (await rig.device.status()).state is DeviceState.UP
