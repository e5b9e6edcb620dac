"""Device drivers whose behaviour the test scripts (for the device runner's tests): each of
`start`, `status`, `stop` (and `build`) is "ok", "raise", "hang" (a Deferred that never fires)
or a function of the device. Checked against `IDeviceDriverFactory` and `IDevice` in
tests/fakes/test_fakes.py."""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from pcnet.devices import DeviceState, DeviceStatus
from pcnet.interfaces import IDevice, IDeviceDriverFactory

__all__ = ["ScriptedDevice", "ScriptedDriver"]


@implementer(IDevice)
class ScriptedDevice:
    """A device whose start, status and stop do what its driver's script says."""

    def __init__(self, factory, device, services, reactor):
        self.factory, self.name, self.services, self.reactor = factory, device.name, services, reactor
        self.stopped = False

    def start(self):
        return self.factory.behave("start", self)

    def stop(self):
        self.stopped = True
        return self.factory.behave("stop", self)

    def status(self):
        return self.factory.behave("status", self)


@implementer(IDeviceDriverFactory)
class ScriptedDriver:
    """A driver named `name` whose devices behave as `behaviour` says (see the module doc);
    the devices it built are in `built`."""

    version, description, settings = "0", "scripted", ()

    def __init__(self, name="scripted", **behaviour):
        self.name = name
        self.behaviour = behaviour
        self.built: list[ScriptedDevice] = []

    def build(self, device, services, reactor):
        if self.behaviour.get("build") == "raise":
            raise RuntimeError("build exploded")
        d = ScriptedDevice(self, device, services, reactor)
        self.built.append(d)
        return d

    def behave(self, what, device):
        how = self.behaviour.get(what, "ok")
        if callable(how):
            return how(device)
        if how == "raise":
            raise RuntimeError(f"{what} exploded")
        if how == "hang":
            return defer.Deferred()
        if what == "status":
            return defer.succeed(DeviceStatus(DeviceState.UP, "fine"))
        return defer.succeed(None)
