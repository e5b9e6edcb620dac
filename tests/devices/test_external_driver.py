"""A driver shipped as its own distribution is found and passes the conformance kit.

The test writes a vendor's distribution (`acme-pcnet-driver`: a `drivers/acme_kiosk.py` plugin
module with no `drivers/__init__.py`, its code in `acme_pcnet`, its own conformance tests),
`pip install`s it into a temporary target directory as an administrator would (offline, no
build isolation), then in a fresh interpreter with that directory on the path: `find_drivers()`
finds `acme-kiosk` beside pcnet's own drivers, a device is configured with it, and the vendor's
conformance test module passes."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """
[build-system]
requires = ["setuptools>=70"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-pcnet-driver"
version = "0.3.0"
description = "ACME kiosk driver for pcnet"

[tool.setuptools.packages.find]
include = ["drivers", "acme_pcnet*"]
namespaces = true
"""

PLUGIN = '''
"""pcnet finds this module in the `drivers` package: it names the driver object."""
from acme_pcnet.driver import kiosk_driver  # noqa: F401
'''

DRIVER = '''
"""ACME's kiosk: it listens on TCP; pcnet connects; the kiosk sends `CARD <number>` lines and
pcnet answers `OK <jobs released>` or `ERR <reason>`."""
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.plugin import IPlugin
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from pcnet.config import REQUIRED
from pcnet.devices import DeviceState, DeviceStatus, port_number, setting
from pcnet.errors import PcnetError
from pcnet.interfaces import IDevice, IDeviceDriverFactory


class _Line(LineOnlyReceiver):
    delimiter = b"\\n"

    def __init__(self, kiosk):
        self.kiosk = kiosk

    def connectionMade(self):
        self.kiosk.protocol = self

    def connectionLost(self, reason):
        if self.kiosk.protocol is self:
            self.kiosk.protocol = None

    def lineReceived(self, line):
        if line.startswith(b"CARD "):
            defer.ensureDeferred(self.kiosk.card(line[5:].decode().strip()))


@implementer(IDevice)
class Kiosk:
    def __init__(self, device, services, reactor):
        self.name, self.services, self.reactor = device.name, services, reactor
        self.protocol = None
        s = device.settings
        self.service = ClientService(
            HostnameEndpoint(reactor, s.host, s.port), Factory.forProtocol(lambda: _Line(self)),
            clock=reactor, retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=0.2))
        self._stopped = None

    def start(self):
        self.service.startService()
        d = defer.Deferred()
        self.service.whenConnected().addBoth(lambda r: self.reactor.callLater(0, d.callback, None))
        return d

    def stop(self):
        if self._stopped is None:
            self._stopped = self.service.stopService()
        return defer.succeed(None)

    def status(self):
        if self.protocol is None:
            return defer.succeed(DeviceStatus(DeviceState.DOWN, "kiosk not connected"))
        return defer.succeed(DeviceStatus(DeviceState.UP, "kiosk connected"))

    async def card(self, number):
        try:
            who = await self.services.authenticate_card(number)
            released = 0
            for job in await self.services.held_jobs(who.user_id):
                await self.services.release_job(who.user_id, job.uuid)
                released += 1
            self.say(f"OK {released}")
        except PcnetError as e:
            self.say(f"ERR {e.code}")

    def say(self, text):
        if self.protocol is not None:
            self.protocol.sendLine(text.encode())


@implementer(IPlugin, IDeviceDriverFactory)
class KioskDriver:
    name = "acme-kiosk"
    version = "0.3.0"
    description = "ACME release kiosk"
    settings = (
        setting("host", str, REQUIRED, "the kiosk's address"),
        setting("port", int, 9100, "the kiosk's TCP port", check=port_number),
        setting("token", str, "", "the kiosk's pairing token", secret=True),
    )

    def build(self, device, services, reactor):
        return Kiosk(device, services, reactor)


kiosk_driver = KioskDriver()
'''

VENDOR_TESTS = '''
"""ACME's own conformance tests: pcnet's kit pointed at the ACME kiosk driver."""
from twisted.internet.protocol import Factory, Protocol

from acme_pcnet.driver import kiosk_driver
from pcnet.devices.testing.conformance import DriverConformance, DriverHarness


class FakeKiosk(Protocol):
    def connectionMade(self):
        self.factory.connections.append(self)

    def connectionLost(self, reason):
        self.factory.connections.remove(self)

    def dataReceived(self, data):
        self.factory.answers.extend(data.decode().split())


class KioskHarness(DriverHarness):
    factory = kiosk_driver
    capabilities = frozenset({"authenticate", "release", "reconnect"})

    async def setup(self):
        self.kiosk = Factory.forProtocol(FakeKiosk)
        self.kiosk.connections, self.kiosk.answers = [], []
        self.listening = self.reactor.listenTCP(0, self.kiosk, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    async def teardown(self):
        await self.disconnect()

    def settings(self):
        return {"host": "127.0.0.1", "port": self.port, "token": "pairing-token-123"}

    async def sign_in(self, device, card):
        await self.settle(lambda: self.kiosk.connections)
        before = len(self.kiosk.answers)
        self.kiosk.connections[0].transport.write(f"CARD {card}\\n".encode())
        await self.settle(lambda: len(self.kiosk.answers) > before)

    async def disconnect(self):
        for c in list(self.kiosk.connections):
            c.transport.abortConnection()
        if self.listening is not None:
            await self.listening.stopListening()
            self.listening = None

    async def reconnect(self):
        self.listening = self.reactor.listenTCP(self.port, self.kiosk, interface="127.0.0.1")


class TestAcmeKiosk(DriverConformance):
    harness = KioskHarness
'''

CHECK_FOUND = '''
from pcnet.devices import configure_device, find_drivers
drivers = find_drivers()
print(sorted(drivers))
config = configure_device(drivers, "lobby-kiosk", "acme-kiosk", {"host": "10.1.2.3", "token": "pairing-token-123"})
print(config.driver, config.settings.port, repr(config))
'''


def test_a_vendors_driver_installed_from_its_own_distribution_is_found_and_conforms(tmp_path):
    dist = tmp_path / "acme"
    (dist / "drivers").mkdir(parents=True)
    (dist / "acme_pcnet").mkdir()
    (dist / "tests").mkdir()
    (dist / "pyproject.toml").write_text(PYPROJECT)
    (dist / "drivers" / "acme_kiosk.py").write_text(textwrap.dedent(PLUGIN))
    (dist / "acme_pcnet" / "__init__.py").write_text("")
    (dist / "acme_pcnet" / "driver.py").write_text(textwrap.dedent(DRIVER))
    (dist / "tests" / "test_acme_conformance.py").write_text(textwrap.dedent(VENDOR_TESTS))
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(dist)],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    assert (site / "drivers" / "acme_kiosk.py").exists()
    assert not (site / "drivers" / "__init__.py").exists()  # pcnet's package is extended, not shadowed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    found = subprocess.run([sys.executable, "-c", CHECK_FOUND], capture_output=True, text=True,
                           timeout=120, env=env, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    names, configured = found.stdout.splitlines()[:2]
    assert eval(names) == ["acme-kiosk", "card-reader", "copy-session", "mfd", "snmp"]
    assert configured.startswith("acme-kiosk 9100") and "pairing-token-123" not in configured
    kit = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(dist / "tests")],
        capture_output=True, text=True, timeout=300, env=env, cwd=dist)
    assert kit.returncode == 0, kit.stdout[-3000:] + kit.stderr[-2000:]
    # usage and status are not claimed by this driver: those two checks are skipped.
    assert "7 passed, 2 skipped" in kit.stdout, kit.stdout[-1000:]
