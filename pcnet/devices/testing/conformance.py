"""The driver conformance kit: interface verification and behaviour tests against a fake core.

A vendor writes a `DriverHarness` for their driver (how to start its simulator, which settings
point the driver at it, and how a person signs in, releases, copies at the device) and a test
class that names it:

    from pcnet.devices.testing.conformance import DriverConformance, DriverHarness

    class AcmeHarness(DriverHarness):
        factory = acme_driver
        capabilities = {"authenticate", "release", "reconnect"}
        ...

    class TestAcme(DriverConformance):
        harness = AcmeHarness

pytest (with pytest-twisted) then runs every check below; a check whose capability the driver
does not claim is skipped with the reason. The checks:

- the factory provides `IDeviceDriverFactory` (verifyObject), has a valid name, version and
  settings schema, and is found by `find_drivers()` (so it is installed where pcnet looks);
- settings are validated (an unknown key is refused) and secrets never show in a repr;
- the device it builds provides `IDevice`; start, status (a `DeviceStatus`), stop; after stop
  it calls no services;
- `authenticate`: a known card signs in through the services, an unknown one is refused and
  nothing is released or charged, a core that fails leaves the device answering;
- `release`: the user's held jobs for the device's printer are released there, and no others;
- `usage`: what the user did at the device is recorded once, for them, with its pages;
- `status`: the device reports its status through the services;
- `reconnect`: a device link that drops is noticed (status down or error) and comes back.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from pcnet.devices import DeviceState, DeviceStatus, configure_device, find_drivers
from pcnet.devices._settings import NAME, check_schema
from pcnet.devices.testing import FakeCore
from pcnet.errors import ConfigError, DeviceUnavailable
from pcnet.interfaces import IDevice, IDeviceDriverFactory

CAPABILITIES = frozenset({"authenticate", "release", "usage", "status", "reconnect"})
RUNNING = (DeviceState.UP, DeviceState.WARNING, DeviceState.UNKNOWN)
BROKEN = (DeviceState.DOWN, DeviceState.ERROR)


class DriverHarness:
    """How the kit runs one driver. Override what your driver needs; see the module doc."""

    factory = None                 # the IDeviceDriverFactory provider
    capabilities: frozenset = frozenset()
    printer_id = 1
    device_name = "device-under-test"
    #: seconds the kit waits for something to happen at the device (real time)
    patience = 10.0
    #: False if the device cannot tell colour copies from grey ones
    counts_colour = True

    def __init__(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.core = FakeCore()

    async def setup(self) -> None:
        """Start the simulator(s)."""

    async def teardown(self) -> None:
        """Stop them; called even when a check failed."""

    def settings(self) -> dict:
        """The device's raw settings, pointing at the simulator."""
        raise NotImplementedError

    def build(self, config, services):
        """The device object (override to hand it a simulated transport)."""
        return self.factory.build(config, services, self.reactor)

    async def sign_in(self, device, card: str) -> None:
        """A person identifies with `card` at the device (a swipe, a panel sign-in)."""
        raise NotImplementedError

    async def release(self, device) -> None:
        """The signed-in person asks for their jobs (nothing to do where signing in releases)."""

    async def use(self, device, pages: int, colour_pages: int) -> None:
        """The signed-in person copies `pages` pages, `colour_pages` of them in colour."""
        raise NotImplementedError

    async def sign_out(self, device) -> None:
        """The person leaves (signs out, swipes again)."""

    async def disconnect(self) -> None:
        """Cut the link between the driver and the device (the device goes away)."""
        raise NotImplementedError

    async def reconnect(self) -> None:
        """The device is back."""
        raise NotImplementedError

    tick_seconds = 0.02

    async def tick(self) -> None:
        """Let a little time pass (real time here; a harness on a task.Clock advances it)."""
        from twisted.internet import task

        await task.deferLater(self.reactor, self.tick_seconds, lambda: None)

    async def settle(self, predicate, what: str = "") -> None:
        """Wait until `predicate()` holds, ticking, at most `patience` seconds."""
        for _ in range(int(self.patience / self.tick_seconds) + 1):
            if predicate():
                return
            await self.tick()
        raise AssertionError(f"not true within {self.patience:g} s: {what or predicate}")


def _needs(harness_class, capability):
    if capability not in harness_class.capabilities:
        pytest.skip(f"the driver does not claim {capability!r}")


class DriverConformance:
    """Subclass with `harness = YourHarness` (a `DriverHarness` subclass) in a test module."""

    harness: type[DriverHarness] = DriverHarness

    # --- running one device -------------------------------------------------------------------

    async def _run(self, body, *, start: bool = True):
        h = self.harness()
        await h.setup()
        device = None
        try:
            config = configure_device({h.factory.name: h.factory}, h.device_name, h.factory.name,
                                      h.settings(), printer_id=h.printer_id)
            services = h.core.services_for(config)
            device = h.build(config, services)
            verifyObject(IDevice, device)
            if start:
                await device.start()
            await body(h, device)
        finally:
            try:
                if device is not None:
                    await device.stop()
            finally:
                await h.teardown()

    @staticmethod
    async def _status(device) -> DeviceStatus:
        status = await device.status()
        assert isinstance(status, DeviceStatus), f"status() gave {status!r}, not a DeviceStatus"
        return status

    # --- the checks ------------------------------------------------------------------------------

    def test_factory_provides_the_interface_and_is_installed(self):
        f = self.harness.factory
        verifyObject(IDeviceDriverFactory, f)
        assert isinstance(f.name, str) and NAME.match(f.name), f"bad driver name {f.name!r}"
        assert isinstance(f.version, str) and f.version
        assert isinstance(f.description, str) and f.description
        check_schema(f.settings)
        installed = find_drivers()
        assert f.name in installed, f"find_drivers() does not find {f.name!r}: is it installed?"
        assert type(installed[f.name]) is type(f)
        assert self.harness.capabilities <= CAPABILITIES, "unknown capabilities claimed"

    @pytest_twisted.ensureDeferred
    async def test_settings_are_validated_and_secrets_hidden(self):
        h = self.harness()
        f = h.factory
        await h.setup()
        try:
            with pytest.raises(ConfigError, match="unknown setting"):
                configure_device({f.name: f}, "x", f.name, {**h.settings(), "no_such_setting_": 1})
            config = configure_device({f.name: f}, "x", f.name, h.settings())
        finally:
            await h.teardown()
        for s in f.settings:
            value = config.settings[s.name]
            if s.secret and isinstance(value, str) and len(value) >= 4:
                assert value not in repr(config), f"secret {s.name!r} shows in a repr"

    @pytest_twisted.ensureDeferred
    async def test_start_status_stop(self):
        async def body(h, device):
            status = await self._status(device)
            assert status.state is not DeviceState.STARTING or status.detail
            await device.stop()
            await device.stop()  # twice is harmless
            before = len(h.core.calls)
            await self._status(device)
            for _ in range(5):
                await h.tick()
            assert len(h.core.calls) == before, "the device called its services after stop()"

        await self._run(body)

    @pytest_twisted.ensureDeferred
    async def test_a_known_card_signs_in_and_an_unknown_one_is_refused(self):
        _needs(self.harness, "authenticate")

        async def body(h, device):
            other = h.core.add_user("mallory", card="99999")
            h.core.hold_job(other, printer_id=h.printer_id)
            await h.sign_in(device, "00000000")
            await h.settle(lambda: any(c[0].startswith("authenticate") for c in h.core.calls))
            assert h.core.released() == [] and h.core.usage == {}
            h.core.add_user("alice", card="12345678")
            await h.sign_in(device, "12345678")
            await h.settle(lambda: any(c[0].startswith("authenticate") and "12345678" in c
                                       for c in h.core.calls))
            assert (await self._status(device)).state in RUNNING

        await self._run(body)

    @pytest_twisted.ensureDeferred
    async def test_a_failing_core_leaves_the_device_answering(self):
        _needs(self.harness, "authenticate")

        async def body(h, device):
            alice = h.core.add_user("alice", card="12345678")
            for method in ("authenticate_card", "authenticate_card_pin"):
                h.core.fail(method, DeviceUnavailable("the core is busy"))
            await h.sign_in(device, "12345678")
            await h.settle(lambda: h.core.calls_of("authenticate_card") or h.core.calls_of("authenticate_card_pin"))
            assert (await self._status(device)).state in RUNNING
            if "release" in h.capabilities:
                job = h.core.hold_job(alice, printer_id=h.printer_id)
                await h.sign_in(device, "12345678")
                await h.release(device)
                await h.settle(lambda: h.core.jobs[job].status == "released")

        await self._run(body)

    @pytest_twisted.ensureDeferred
    async def test_held_jobs_are_released_at_the_devices_printer_only(self):
        _needs(self.harness, "release")

        async def body(h, device):
            alice = h.core.add_user("alice", card="12345678")
            here = h.core.hold_job(alice, printer_id=h.printer_id)
            elsewhere = h.core.hold_job(alice, printer_id=h.printer_id + 1000)
            await h.sign_in(device, "12345678")
            await h.release(device)
            await h.settle(lambda: h.core.jobs[here].status == "released")
            assert h.core.jobs[here].released_to == h.printer_id
            assert h.core.jobs[elsewhere].status == "held"
            await h.sign_out(device)

        await self._run(body)

    @pytest_twisted.ensureDeferred
    async def test_usage_is_recorded_once_for_the_user(self):
        _needs(self.harness, "usage")

        async def body(h, device):
            alice = h.core.add_user("alice", card="12345678", balance="50.00")
            await h.sign_in(device, "12345678")
            await h.settle(lambda: h.core.calls_of("authenticate_card") or h.core.calls_of("authenticate_card_pin"))
            await h.use(device, 4, 1 if h.counts_colour else 0)
            await h.sign_out(device)
            await h.settle(lambda: h.core.usage)
            (device_name, usage, receipt), = h.core.usage.values()
            assert device_name == h.device_name and usage.user_id == alice.id
            assert usage.pages == 4 and usage.colour_pages == (1 if h.counts_colour else 0)
            assert receipt.cost > 0

        await self._run(body)

    @pytest_twisted.ensureDeferred
    async def test_status_is_reported_through_the_services(self):
        _needs(self.harness, "status")

        async def body(h, device):
            await h.settle(lambda: h.core.reports[h.device_name].statuses)
            assert isinstance(h.core.reports[h.device_name].statuses[-1], DeviceStatus)

        await self._run(body)

    @pytest_twisted.ensureDeferred
    async def test_a_dropped_device_link_is_noticed_and_comes_back(self):
        _needs(self.harness, "reconnect")

        async def body(h, device):
            current = {}

            async def state():
                current["state"] = (await self._status(device)).state
                return current["state"]

            await h.disconnect()
            await _until(h, state, lambda s: s in BROKEN)
            await h.reconnect()
            await _until(h, state, lambda s: s in RUNNING)
            if "release" in h.capabilities:
                alice = h.core.add_user("alice", card="12345678")
                job = h.core.hold_job(alice, printer_id=h.printer_id)
                await h.sign_in(device, "12345678")
                await h.release(device)
                await h.settle(lambda: h.core.jobs[job].status == "released")

        await self._run(body)


async def _until(h, probe, good):
    """Wait for `good(await probe())`, moving time on with the harness's `tick`."""
    for _ in range(int(h.patience / h.tick_seconds) + 1):
        if good(await probe()):
            return
        await h.tick()
    raise AssertionError(f"the device's state did not change within {h.patience:g} s")
