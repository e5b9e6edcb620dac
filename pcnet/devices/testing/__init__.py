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
