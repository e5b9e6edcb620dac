"""The built-in drivers pass the conformance kit (`pcnet.devices.testing.conformance`), each
through a harness over its simulator: snmpsim for `snmp` and `copy-session`, the simulated
card reader for `card-reader` and `copy-session`, the fake MFD and scripted panel for `mfd`."""

import tempfile
from pathlib import Path

import pytest
from twisted.internet import task, threads
from treq.testing import StubTreq

from drivers.card_reader import card_reader
from drivers.copy_session import copy_session
from drivers.mfd import Mfd, mfd
from drivers.snmp import snmp
from pcnet.devices.testing.conformance import DriverConformance, DriverHarness
from pcnet.devices.testing.fake_mfd import FakeMfd, ScriptedPanel
from pcnet.devices.testing.fake_reader import FakeReader
from pcnet.devices.testing.snmpsim import SnmpSimulator, set_counter

from .conftest import RECORDINGS
from .test_copy_session import COPY_COLOUR, COPY_MONO, LIFE, writable

pytestmark = pytest.mark.integration


class SnmpHarness(DriverHarness):
    factory = snmp
    capabilities = frozenset({"status", "reconnect"})

    async def setup(self):
        self.agent = SnmpSimulator(Path(tempfile.mkdtemp()), {"sharp": RECORDINGS / "sharp.snmprec"})
        self.agent.start()

    async def teardown(self):
        self.agent.stop()

    def settings(self):
        return {"host": "127.0.0.1", "port": self.agent.port, "community": "sharp",
                "poll_interval": 0.2, "timeout": 0.2, "retries": 0, "down_after": 2}

    async def disconnect(self):
        self.agent.stop()

    async def reconnect(self):
        await threads.deferToThread(self.agent.start)


class ReaderHarnessMixin:
    async def _reader_up(self):
        self.reader = FakeReader(self.reactor)
        self.port = self.reader.listen()

    async def sign_in(self, device, card):
        before = len(self.reader.commands)
        await self.settle(lambda: self.reader.connected, "the reader is connected")
        self.reader.swipe(card)
        # The reader answers every swipe with a beep or an error signal.
        await self.settle(lambda: any(c in (b"b", b"e") for c in self.reader.commands[before:]),
                          "the reader signalled the swipe's outcome")

    async def disconnect(self):
        await self.reader.close()

    async def reconnect(self):
        self.reader.listen(self.port)


class CardReaderHarness(ReaderHarnessMixin, DriverHarness):
    factory = card_reader
    capabilities = frozenset({"authenticate", "release", "reconnect"})

    async def setup(self):
        await self._reader_up()

    async def teardown(self):
        await self.reader.close()

    def settings(self):
        return {"host": "127.0.0.1", "port": self.port, "reconnect_initial": 0.05,
                "reconnect_max": 0.2}


class CopySessionHarness(ReaderHarnessMixin, DriverHarness):
    factory = copy_session
    capabilities = frozenset({"authenticate", "usage", "reconnect"})

    async def setup(self):
        await self._reader_up()
        sharp = (RECORDINGS / "sharp.snmprec").read_text()
        self.agent = SnmpSimulator(Path(tempfile.mkdtemp()), {
            "copier": writable(sharp, {LIFE, COPY_MONO, COPY_COLOUR})})
        self.agent.start()
        self.mono, self.colour = 37485, 1319

    async def teardown(self):
        await self.reader.close()
        self.agent.stop()

    def settings(self):
        return {"host": "127.0.0.1", "port": self.port, "reconnect_initial": 0.05,
                "reconnect_max": 0.2, "snmp_host": "127.0.0.1", "snmp_port": self.agent.port,
                "snmp_community": "copier", "counter_interval": 0.2}

    async def use(self, device, pages, colour_pages):
        self.mono += pages - colour_pages
        self.colour += colour_pages
        await threads.deferToThread(set_counter, self.agent.port, "copier", COPY_MONO, self.mono)
        await threads.deferToThread(set_counter, self.agent.port, "copier", COPY_COLOUR, self.colour)

    async def sign_out(self, device):
        session = device.session
        if session is not None:
            await self.sign_in(device, session.card)


class MfdHarness(DriverHarness):
    factory = mfd
    capabilities = frozenset({"authenticate", "release", "usage", "reconnect"})

    def __init__(self):
        super().__init__()
        self.reactor = task.Clock()
        self.mfd = FakeMfd(password="mfd-admin-secret")

    def settings(self):
        return {"url": "https://mfd.invalid", "password": "mfd-admin-secret", "joblog_interval": 1}

    def build(self, config, services):
        device = Mfd(config, services, self.reactor, http=StubTreq(self.mfd.resource()))
        self.panel = ScriptedPanel(StubTreq(device.panel_resource()))
        return device

    async def tick(self):
        self.reactor.advance(1)

    async def sign_in(self, device, card):
        await self.panel.sign_in_card(card)

    async def release(self, device):
        await self.panel.release("all")

    async def use(self, device, pages, colour_pages):
        self.mfd.copy(pages, colour_pages)

    async def sign_out(self, device):
        await self.panel.sign_out()

    async def disconnect(self):
        self.mfd.available = False

    async def reconnect(self):
        self.mfd.available = True


class TestSnmpConformance(DriverConformance):
    harness = SnmpHarness


class TestCardReaderConformance(DriverConformance):
    harness = CardReaderHarness


class TestCopySessionConformance(DriverConformance):
    harness = CopySessionHarness


class TestMfdConformance(DriverConformance):
    harness = MfdHarness
