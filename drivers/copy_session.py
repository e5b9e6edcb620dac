"""The `copy-session` driver: copy tracking with any SNMP copier and a network card reader.

For copiers without an embedded app, as copier terminals do it. A swipe at the copier's reader
opens a session for the card's holder (authenticated, and only if they can afford at least one
copy); the copier's page counters are read over SNMP. A second swipe of the same card, a swipe of
another card (which then opens that user's session), or `idle_timeout` seconds without the
counters moving, closes it: the counters are read again and the difference is the session's
copies, recorded as usage (charged with the device's copy prices) under a uuid derived from the
session, so a retried recording charges once.

Which counters: where the copier has vendor copy counters (Sharp's copy mono/colour), their
difference is the copies, colour included, and prints cannot be mistaken for copies. Otherwise
the life page counter's difference, minus the pages pcnet printed on the copier meanwhile
(`printed_pages`), counted as grey (the life counter does not tell colour apart).
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime, timezone

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from drivers.card_reader import READER_SETTINGS, ReaderLink
from drivers.snmp import SNMP_SETTINGS, snmp_target
from pcnet.devices import DeviceSettings, DeviceState, DeviceStatus, Usage, positive, setting
from pcnet.devices.printer_mib import VENDORS, poll_plan, read_poll
from pcnet.devices.snmp import POLLERS
from pcnet.errors import PcnetError, UnknownCard
from pcnet.interfaces import IDevice, IDeviceDriverFactory

log = Logger(namespace="drivers.copy_session")

_NAMESPACE = uuidlib.UUID("6c0f3f4e-5d0b-4a53-9f3c-2f1f0d6c0a10")


def _prefixed(prefix, settings):
    """The SNMP settings, renamed `snmp_...` beside the reader's own host and port."""
    out = []
    for s in settings:
        out.append(setting(f"{prefix}{s.name}", s.type, s.default, s.help, check=s.check,
                           secret=s.secret))
    return tuple(out)


COPY_SETTINGS = READER_SETTINGS + _prefixed("snmp_", SNMP_SETTINGS) + (
    setting("snmp_timeout", (int, float), 2, "seconds to wait for the copier's SNMP answer",
            check=positive),
    setting("snmp_retries", int, 2, "SNMP requests resent before a counter reading fails",
            check=lambda v: None if v >= 0 else "must be at least 0"),
    setting("idle_timeout", (int, float), 120, "seconds without copying after which a session "
            "closes by itself", check=positive),
    setting("counter_interval", (int, float), 15, "seconds between counter readings during a "
            "session (to see that copying goes on)", check=positive),
    setting("paper_size", str, "A4", "paper size copies are charged at"),
)


@dataclass(frozen=True)
class CounterReading:
    life: int | None
    copy_mono: int | None
    copy_colour: int | None
    at: datetime


@dataclass
class CopySession:
    user_id: int
    username: str
    card: str
    start: CounterReading
    last_change: float
    last: CounterReading
    id: str


def session_pages(start: CounterReading, end: CounterReading, printed: int) -> tuple[int, int]:
    """(pages, colour pages) copied between two readings, `printed` pages being pcnet's prints."""
    if None not in (start.copy_mono, start.copy_colour, end.copy_mono, end.copy_colour):
        mono = max(0, end.copy_mono - start.copy_mono)
        colour = max(0, end.copy_colour - start.copy_colour)
        return mono + colour, colour
    if start.life is None or end.life is None:
        raise PcnetError("the copier reports no page counter", code="counter_not_reported")
    return max(0, end.life - start.life - printed), 0


class _SnmpCounters:
    """The copier's counters over SNMP (a copy of the `snmp` driver's reading, counters only)."""

    def __init__(self, settings, reactor):
        values = {name[len("snmp_"):]: settings[name] for name in settings if name.startswith("snmp_")}
        s = DeviceSettings({**values, "max_varbinds": 48})
        self.target = snmp_target(s)
        vendor = s.vendor
        vendors = tuple(VENDORS) if vendor == "auto" else (() if vendor == "none" else (vendor,))
        self.plan = poll_plan(s.device_index, vendors, counters_only=True)
        self.reactor = reactor
        self.poller = None

    def open(self):
        self.poller = POLLERS.acquire(self.reactor, 8)

    def close(self):
        if self.poller is not None:
            POLLERS.release(self.reactor)
            self.poller = None

    async def read(self) -> CounterReading:
        scalars, tables = await self.poller.poll(self.target, self.plan)
        reading = read_poll(self.plan, scalars, tables)
        detail = reading.counters.detail
        return CounterReading(reading.counters.life, detail.get("copy.mono"),
                              detail.get("copy.colour"),
                              datetime.fromtimestamp(self.reactor.seconds(), tz=timezone.utc))


@implementer(IDevice)
class CopierTerminal:
    """A copier's card reader and its SNMP counters (see the module doc)."""

    def __init__(self, device, services, reactor, counters=None):
        self.device = device
        self.name = device.name
        self.services = services
        self.reactor = reactor
        s = device.settings
        self.idle_timeout = float(s.idle_timeout)
        self.paper_size = s.paper_size
        self.counters = counters if counters is not None else _SnmpCounters(s, reactor)
        self.link = ReaderLink(device.name, s, reactor, self.swiped)
        self.session: CopySession | None = None
        self.sessions = 0
        self._busy = False
        self._watch = task.LoopingCall(self._check_activity)
        self._watch.clock = reactor
        self._interval = float(s.counter_interval)
        self.last_error = ""

    # --- IDevice ---------------------------------------------------------------------------

    def start(self):
        self.counters.open()
        return self.link.start()

    async def _stop(self):
        if self.session is not None:
            await self.close_session("the terminal stopped")
        if self._watch.running:
            self._watch.stop()
        await self.link.stop()
        self.counters.close()

    def stop(self):
        return defer.ensureDeferred(self._stop())

    def status(self):
        reader = self.link.status()
        if reader.state is not DeviceState.UP:
            return defer.succeed(reader)
        detail = f"session of {self.session.username}" if self.session else "idle"
        if self.last_error:
            detail += f"; last problem: {self.last_error}"
        return defer.succeed(DeviceStatus(DeviceState.UP, detail,
                                          facts={"session": self.session.username if self.session else None}))

    # --- sessions --------------------------------------------------------------------------

    def swiped(self, card: str):
        if self._busy:
            log.info("copier {name!r}: a swipe while a session opens or closes; ignored", name=self.name)
            return defer.succeed(None)
        return defer.ensureDeferred(self._swiped(card))

    async def _swiped(self, card: str):
        self._busy = True
        try:
            current = self.session
            if current is not None:
                await self.close_session("swiped out" if current.card == card else "another card")
                if current.card == card:
                    return
            await self._open(card)
        finally:
            self._busy = False

    async def _open(self, card: str):
        try:
            identity = await self.services.authenticate_card(card)
            account = await self.services.balance(identity.user_id)
            one_page = await self.services.quote_usage(Usage(
                "quote-00000000", "copy", identity.user_id, 1, paper_size=self.paper_size))
            if account.available is not None and account.available < one_page:
                log.info("copier {name!r}: {user} cannot afford a copy", name=self.name,
                         user=identity.username)
                self.link.error()
                return
            start = await self.counters.read()
        except UnknownCard:
            self.link.error()
            return
        except PcnetError as e:
            self.last_error = e.message
            log.warn("copier {name!r}: cannot open a session: {why}", name=self.name, why=e.message)
            self.link.error()
            return
        now = self.reactor.seconds()
        session_id = str(uuidlib.uuid5(_NAMESPACE, f"{self.name}/{identity.user_id}/{start.at.isoformat()}"))
        self.session = CopySession(identity.user_id, identity.username, card, start, now, start, session_id)
        self.sessions += 1
        if not self._watch.running:
            self._watch.start(self._interval, now=False)
        self.link.beep()
        log.info("copier {name!r}: session of {user} opened", name=self.name, user=identity.username)

    async def _check_activity(self):
        session = self.session
        if session is None or self._busy:
            return
        try:
            reading = await self.counters.read()
        except PcnetError as e:
            self.last_error = e.message
            reading = None
        if self.session is not session:
            return
        now = self.reactor.seconds()
        if reading is not None and (reading.life, reading.copy_mono, reading.copy_colour) != (
                session.last.life, session.last.copy_mono, session.last.copy_colour):
            session.last, session.last_change = reading, now
        elif now - session.last_change >= self.idle_timeout:
            self._busy = True
            try:
                await self.close_session("idle")
            finally:
                self._busy = False

    async def close_session(self, why: str, attempts: int = 3):
        """Read the counters, record the session's copies, and forget the session."""
        session, self.session = self.session, None
        if session is None:
            return None
        if self._watch.running:
            self._watch.stop()
        end = None
        for attempt in range(attempts):
            try:
                end = await self.counters.read()
                break
            except PcnetError as e:
                self.last_error = e.message
                if attempt + 1 < attempts:
                    await task.deferLater(self.reactor, self._interval, lambda: None)
        if end is None:
            log.error("copier {name!r}: the session of {user} could not be counted (no counter "
                      "reading at its end): {why}", name=self.name, user=session.username,
                      why=self.last_error)
            self.link.error()
            return None
        try:
            printed = 0
            if end.copy_mono is None:
                printed = await self.services.printed_pages(session.start.at, end.at)
            pages, colour = session_pages(session.start, end, printed)
            receipt = None
            if pages:
                receipt = await self.services.record_usage(Usage(
                    session.id, "copy", session.user_id, pages, colour, False, self.paper_size,
                    document_name=f"copies at {self.name}", at=end.at))
            log.info("copier {name!r}: session of {user} closed ({why}): {pages} page(s), "
                     "{colour} in colour", name=self.name, user=session.username, why=why,
                     pages=pages, colour=colour)
            self.link.beep()
            return receipt
        except PcnetError as e:
            self.last_error = e.message
            log.error("copier {name!r}: recording the session of {user} failed: {why}",
                      name=self.name, user=session.username, why=e.message)
            self.link.error()
            return None


@implementer(IPlugin, IDeviceDriverFactory)
class CopySessionDriver:
    name = "copy-session"
    version = "1.0"
    description = "copy tracking at any SNMP copier: swipe in, copy, swipe out (or idle out)"
    settings = COPY_SETTINGS

    def build(self, device, services, reactor):
        return CopierTerminal(device, services, reactor)


copy_session = CopySessionDriver()
