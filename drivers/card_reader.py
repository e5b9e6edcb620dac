"""The `card-reader` driver: a network card reader at a printer, released at by a swipe.

Modelled on PaperCut's Fast Release readers. The reader listens on TCP (port 7778 by default)
and the server connects to it. The reader sends each card number it reads as a line (`\\n` or
`\\r\\n`); the server sends single-byte commands: `v` asks for the reader's version (it answers
with a line starting with `v`, e.g. `v2.1`), `e` makes it signal an error (red light, error
tone), `b` makes it beep (success). docs/drivers.md has the exchange.

A swipe authenticates the card through the device's services and releases every job the card's
holder has held for the reader's printer: `b` when at least one job was released, `e` for an
unknown card, no jobs, or jobs the holder cannot afford. A swipe that comes while that card's
(or that user's) jobs are still being released is ignored (one release at a time, never a job
released twice). A dropped connection is reconnected with backoff; the device is reported down
meanwhile.
"""

from __future__ import annotations

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from pcnet.config import REQUIRED
from pcnet.devices import DeviceState, DeviceStatus, port_number, positive, setting
from pcnet.errors import Conflict, InsufficientFunds, PcnetError, UnknownCard
from pcnet.interfaces import IDevice, IDeviceDriverFactory

log = Logger(namespace="drivers.card_reader")

DEFAULT_PORT = 7778
MAX_CARD_LENGTH = 64

READER_SETTINGS = (
    setting("host", str, REQUIRED, "the card reader's address"),
    setting("port", int, DEFAULT_PORT, "the reader's TCP port", check=port_number),
    setting("reconnect_initial", (int, float), 1, "seconds before the first reconnection attempt "
            "(doubling up to reconnect_max)", check=positive),
    setting("reconnect_max", (int, float), 30, "longest wait between reconnection attempts",
            check=positive),
    setting("connect_timeout", (int, float), 10, "seconds a connection attempt may take",
            check=positive),
)


def valid_card(line: str) -> str | None:
    """The card number in a reader's line, or None for noise (empty, too long, not printable)."""
    card = line.strip()
    if not card or len(card) > MAX_CARD_LENGTH or not card.isprintable() or card.startswith("v"):
        return None
    return card


class ReaderProtocol(LineOnlyReceiver):
    """The server's end of one connection to a reader."""

    delimiter = b"\n"
    MAX_LENGTH = 256  # a card number is a few dozen characters; more is not a reader

    def __init__(self, link: ReaderLink):
        self.link = link

    def connectionMade(self):
        self.link._connected(self)
        self.command(b"v")

    def connectionLost(self, reason):
        self.link._lost(self, reason.getErrorMessage())

    def lineReceived(self, line: bytes):
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if text.startswith("v"):
            self.link.version = text[:64]
            return
        card = valid_card(text)
        if card is None:
            log.info("reader {name!r} sent a line that is no card number; ignored",
                     name=self.link.name)
            return
        self.link._swiped(card)

    def lineLengthExceeded(self, line):
        log.warn("reader {name!r} sent an over-long line; reconnecting", name=self.link.name)
        self.transport.abortConnection()

    def command(self, byte: bytes):
        self.transport.write(byte)


def _fire(d: Deferred, result) -> None:
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(None)


class ReaderLink:
    """A reader connection that stays up (ClientService, backoff) and calls `on_card(card)`
    for each swipe; `beep()` and `error()` signal the reader."""

    def __init__(self, name, settings, reactor, on_card):
        self.name = name
        self.settings = settings
        self.reactor = reactor
        self.on_card = on_card
        self.protocol: ReaderProtocol | None = None
        self.version: str | None = None
        self.last_error = "not connected yet"
        self.connections = 0
        self._stopping = None
        endpoint = HostnameEndpoint(reactor, settings.host, settings.port,
                                    timeout=float(settings.connect_timeout))
        factory = Factory.forProtocol(lambda: ReaderProtocol(self))
        self.service = ClientService(
            endpoint, factory, clock=reactor,
            retryPolicy=backoffPolicy(initialDelay=float(settings.reconnect_initial),
                                      maxDelay=float(settings.reconnect_max)))

    def start(self):
        """Start connecting; a Deferred firing at the first connection."""
        self.service.startService()
        connected = Deferred()
        # Fired on a later turn: whenConnected fires inside ClientService's state machine, which
        # must not be re-entered (e.g. by a caller stopping the link as soon as it is up).
        self.service.whenConnected(failAfterFailures=None).addBoth(
            lambda result: self.reactor.callLater(0, _fire, connected, result))
        return connected

    def stop(self):
        """Stop reconnecting and drop the connection; a second call is harmless."""
        if self._stopping is None:
            self._stopping = self.service.stopService()
            self._stopping.addErrback(lambda f: None)
        from pcnet.devices import fork

        return fork(self._stopping)

    @property
    def connected(self) -> bool:
        return self.protocol is not None

    def _connected(self, protocol):
        self.protocol = protocol
        self.connections += 1
        log.info("card reader {name!r} connected", name=self.name)

    def _lost(self, protocol, why):
        if self.protocol is protocol:
            self.protocol = None
            self.last_error = f"connection lost: {why}"
            log.info("card reader {name!r}: {why}; reconnecting", name=self.name, why=why)

    def _swiped(self, card):
        try:
            d = defer.maybeDeferred(self.on_card, card)
        except Exception:  # maybeDeferred catches; belt and braces
            return
        d.addErrback(lambda f: log.failure("reader {name!r}: handling a swipe failed", f,
                                           name=self.name))

    def beep(self):
        if self.protocol is not None:
            self.protocol.command(b"b")

    def error(self):
        if self.protocol is not None:
            self.protocol.command(b"e")

    def status(self) -> DeviceStatus:
        if self.connected:
            detail = "connected" + (f", reader {self.version}" if self.version else "")
            return DeviceStatus(DeviceState.UP, detail, facts={"version": self.version})
        return DeviceStatus(DeviceState.DOWN, self.last_error)


@implementer(IDevice)
class CardReader:
    """A reader releasing held jobs at its printer (see the module doc)."""

    def __init__(self, device, services, reactor):
        self.device = device
        self.name = device.name
        self.services = services
        self.reactor = reactor
        self.link = ReaderLink(device.name, device.settings, reactor, self.swiped)
        self._busy: set = set()  # cards and user ids whose release is in progress
        self.releases = 0
        self.ignored = 0  # swipes that came while the same jobs were being released

    def start(self):
        return self.link.start()

    def stop(self):
        return self.link.stop()

    def status(self):
        return defer.succeed(self.link.status())

    def swiped(self, card: str):
        """Release the card holder's held jobs here; a Deferred of how many were released."""
        if card in self._busy:
            log.info("reader {name!r}: a swipe while that card's jobs are being released; ignored",
                     name=self.name)
            self.ignored += 1
            return defer.succeed(0)
        return defer.ensureDeferred(self._release(card))

    async def _release(self, card: str) -> int:
        self._busy.add(card)
        user_id = None
        try:
            try:
                identity = await self.services.authenticate_card(card)
            except UnknownCard:
                log.info("reader {name!r}: unknown card", name=self.name)
                self.link.error()
                return 0
            user_id = identity.user_id
            if user_id in self._busy:  # another of the user's cards is releasing
                self.ignored += 1
                return 0
            self._busy.add(user_id)
            released = 0
            for job in await self.services.held_jobs(user_id):
                try:
                    await self.services.release_job(user_id, job.uuid)
                    released += 1
                except Conflict:
                    continue  # released or cancelled meanwhile elsewhere
                except InsufficientFunds:
                    log.info("reader {name!r}: {user} cannot afford job {uuid}", name=self.name,
                             user=identity.username, uuid=job.uuid)
                    break
            self.releases += released
            if released:
                self.link.beep()
            else:
                self.link.error()
            log.info("reader {name!r}: {n} job(s) of {user} released", name=self.name, n=released,
                     user=identity.username)
            return released
        except PcnetError as e:
            log.warn("reader {name!r}: release failed: {why}", name=self.name, why=e.message)
            self.link.error()
            return 0
        finally:
            self._busy.discard(card)
            if user_id is not None:
                self._busy.discard(user_id)


@implementer(IPlugin, IDeviceDriverFactory)
class CardReaderDriver:
    name = "card-reader"
    version = "1.0"
    description = "network card reader at a printer: a swipe releases the holder's held jobs"
    settings = READER_SETTINGS

    def build(self, device, services, reactor):
        return CardReader(device, services, reactor)


card_reader = CardReaderDriver()
