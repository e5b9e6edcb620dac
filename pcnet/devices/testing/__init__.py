"""Testing drivers: a fake core, device simulators, and the conformance kit.

- `FakeCore` / `FakeDeviceServices`: the core's side of `IDeviceServices` in memory;
- `pcnet.devices.testing.snmpsim`: Debian's snmpsim serving recordings on loopback;
- `pcnet.devices.testing.fake_reader`: a network card reader (the `card-reader` protocol);
- `pcnet.devices.testing.fake_mfd`: an MFD's web services and a scripted panel;
- `pcnet.devices.testing.conformance`: `DriverConformance`, the behaviour tests a vendor points
  at a driver through a `DriverHarness` (docs/drivers.md).
"""

from pcnet.devices.testing._fake_core import (
    DEFAULT_PRICES,
    DeviceReports,
    FakeAccount,
    FakeCore,
    FakeDeviceServices,
    FakeHeldJob,
    FakeUser,
)

__all__ = ["DEFAULT_PRICES", "DeviceReports", "FakeAccount", "FakeCore", "FakeDeviceServices",
           "FakeHeldJob", "FakeUser"]


async def eventually(predicate, *, timeout: float = 5.0, step: float = 0.01, reactor=None):
    """Wait (on the real reactor) until `predicate()` is true, at most `timeout` seconds; an
    AssertionError naming the predicate if it never is. For tests over real sockets."""
    from twisted.internet import task

    if reactor is None:
        from twisted.internet import reactor
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"not true within {timeout:g} s: {getattr(predicate, '__doc__', None) or predicate}")
        await task.deferLater(reactor, step, lambda: None)
        waited += step
    return True


__all__ += ["eventually"]
