"""The `copy-session` driver: a swipe opens a copy session at an SNMP copier, a second swipe or
an idle timeout closes it, and the counter difference is recorded as copies. Against a real
snmpsim whose counters the test moves with SNMP SETs (snmpsim's writecache), and the simulated
card reader over loopback TCP."""

from datetime import datetime, timezone

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from drivers.copy_session import CounterReading, session_pages
from pcnet.devices import configure_device, find_drivers
from pcnet.devices.testing import FakeCore, eventually
from pcnet.devices.testing.fake_reader import FakeReader
from pcnet.devices.testing.snmpsim import SnmpSimulator, set_counter

from .conftest import RECORDINGS

LIFE = "1.3.6.1.2.1.43.10.2.1.4.1.1"
COPY_MONO = "1.3.6.1.4.1.2385.1.1.19.2.1.3.4.4.61"
COPY_COLOUR = "1.3.6.1.4.1.2385.1.1.19.2.1.3.4.4.63"
PRINTER = 9


def writable(text: str, oids) -> str:
    """A recording whose `oids` accept SNMP SETs (snmpsim's writecache variation)."""
    out = []
    for line in text.splitlines():
        oid, kind, value = line.split("|", 2)
        out.append(f"{oid}|{kind}:writecache|value={value}" if oid in oids else line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def copier_agent(tmp_path_factory):
    sharp = (RECORDINGS / "sharp.snmprec").read_text()
    no_vendor = "\n".join(l for l in sharp.splitlines() if ".2385." not in l)
    with SnmpSimulator(tmp_path_factory.mktemp("copier"), {
        "copier": writable(sharp, {LIFE, COPY_MONO, COPY_COLOUR}),
        "plain": writable(no_vendor, {LIFE}),
    }) as agent:
        yield agent


class Copier:
    def __init__(self, agent, community, **settings):
        self.agent, self.community = agent, community
        self.reader = FakeReader(reactor)
        port = self.reader.listen()
        drivers = find_drivers()
        self.config = configure_device(drivers, "copier-1", "copy-session", {
            "host": "127.0.0.1", "port": port, "reconnect_initial": 0.05,
            "snmp_host": "127.0.0.1", "snmp_port": agent.port, "snmp_community": community,
            "counter_interval": 0.1, "idle_timeout": 60, **settings}, printer_id=PRINTER)
        self.core = FakeCore()
        self.device = drivers["copy-session"].build(self.config, self.core.services_for(self.config),
                                                    reactor)

    async def set(self, oid, value):
        await threads.deferToThread(set_counter, self.agent.port, self.community, oid, value)

    async def __aenter__(self):
        await self.device.start()
        await eventually(lambda: b"v" in self.reader.commands)
        return self

    async def __aexit__(self, *exc):
        await self.device.stop()
        await self.reader.close()


@pytest_twisted.ensureDeferred
async def test_a_session_is_charged_the_copies_the_vendor_counters_saw(copier_agent):
    async with Copier(copier_agent, "copier") as c:
        await c.set(COPY_MONO, 37485)
        await c.set(COPY_COLOUR, 1319)
        alice = c.core.add_user("alice", card="A1", balance="5.00")
        c.reader.swipe("A1")
        await eventually(lambda: c.device.session is not None)
        await c.set(COPY_MONO, 37485 + 7)
        await c.set(COPY_COLOUR, 1319 + 2)
        c.reader.swipe("A1")
        await eventually(lambda: c.core.usage)
        (device, usage, receipt), = c.core.usage.values()
        assert (device, usage.kind, usage.user_id, usage.pages, usage.colour_pages) == (
            "copier-1", "copy", alice.id, 9, 2)
        # 7 grey copies at 0.10 and 2 colour at 0.50
        assert str(receipt.cost) == "1.7000" and str(c.core.account_of(alice).balance) == "3.3000"
        assert c.device.session is None
        await eventually(lambda: c.reader.commands.count(b"b") == 2)  # opened, closed


@pytest_twisted.ensureDeferred
async def test_without_copy_counters_the_life_counter_less_pcnets_prints_is_charged(copier_agent):
    async with Copier(copier_agent, "plain", snmp_vendor="none") as c:
        await c.set(LIFE, 121104)
        bob = c.core.add_user("bob", card="B2")
        c.reader.swipe("B2")
        await eventually(lambda: c.device.session is not None)
        await c.set(LIFE, 121104 + 10)
        c.core.print_on(PRINTER, 4)  # a pcnet print job came out during the session
        c.reader.swipe("B2")
        await eventually(lambda: c.core.usage)
        (_, usage, _), = c.core.usage.values()
        assert (usage.pages, usage.colour_pages, usage.user_id) == (6, 0, bob.id)
        assert c.core.calls_of("printed_pages")


@pytest_twisted.ensureDeferred
async def test_an_idle_session_closes_by_itself(copier_agent):
    async with Copier(copier_agent, "copier", idle_timeout=0.3) as c:
        c.core.add_user("carol", card="C3")
        c.reader.swipe("C3")
        await eventually(lambda: c.device.session is not None)
        await eventually(lambda: c.device.session is None, timeout=5)
        assert c.core.usage == {}  # nothing copied, nothing charged


@pytest_twisted.ensureDeferred
async def test_a_user_who_cannot_afford_a_copy_gets_no_session(copier_agent):
    async with Copier(copier_agent, "copier") as c:
        c.core.add_user("dan", card="D4", balance="0.00")
        c.reader.swipe("D4")
        await eventually(lambda: b"e" in c.reader.commands)
        assert c.device.session is None


@pytest_twisted.ensureDeferred
async def test_another_card_closes_the_session_and_opens_its_own(copier_agent):
    async with Copier(copier_agent, "copier") as c:
        c.core.add_user("erin", card="E5")
        frank = c.core.add_user("frank", card="F6")
        c.reader.swipe("E5")
        await eventually(lambda: c.device.session is not None)
        c.reader.swipe("F6")
        await eventually(lambda: c.device.session is not None and c.device.session.user_id == frank.id)
        assert c.device.sessions == 2


def test_session_pages_prefer_copy_counters_and_never_go_negative():
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert session_pages(CounterReading(100, 10, 5, at), CounterReading(120, 13, 6, at), 99) == (4, 1)
    assert session_pages(CounterReading(100, None, None, at), CounterReading(110, None, None, at), 3) == (7, 0)
    assert session_pages(CounterReading(100, None, None, at), CounterReading(102, None, None, at), 5) == (0, 0)
