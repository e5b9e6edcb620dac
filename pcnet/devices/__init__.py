"""The device core: what drivers are written against and what runs them (ARCHITECTURE §6).

A driver (a plugin in the `drivers` package, pcnet's or a vendor's) provides
`pcnet.interfaces.IDeviceDriverFactory`: a name, a version, a settings schema of `Setting`s, and
`build(device, services, reactor)` giving an `IDevice`. The core validates each device's
settings (`parse_settings`), gives the driver an `IDeviceServices` bound to the device, and runs
it under a `DeviceRunner` that isolates a driver that raises, hangs or leaks. The records the two
sides exchange are below; `pcnet.devices.testing` has the fake core, the simulators and the
conformance kit. docs/drivers.md is the guide for vendors.
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pcnet.devices._plugins import driver_named, find_drivers
from pcnet.devices._records import (
    USAGE_KINDS,
    AccountChoice,
    Alert,
    Counters,
    DeviceState,
    DeviceStatus,
    HeldJob,
    Identity,
    Supply,
    Usage,
    UsageReceipt,
)
from pcnet.devices._runner import DeviceReport, DeviceRunner, RunnerPolicy
from pcnet.devices._settings import (
    DeviceConfig,
    DeviceSettings,
    Setting,
    one_of,
    parse_settings,
    port_number,
    positive,
    setting,
)


def configure_device(drivers: dict, name: str, driver: str, settings: dict, *,
                     printer_id: int | None = None, printer_name: str = "",
                     site: str | None = None, where: str = "") -> DeviceConfig:
    """A `DeviceConfig` from raw values (a TOML table, an API body): the driver must be
    installed and the settings pass its schema, else a `ConfigError` naming the device and key."""
    factory = driver_named(driver, drivers)
    label = f"{where}: device {name!r}" if where else f"device {name!r}"
    typed = parse_settings(factory.settings, settings, where=f"{label} ({driver})")
    return DeviceConfig(name, driver, typed, printer_id, printer_name, site)


def fork(d: Deferred) -> Deferred:
    """A new Deferred firing with `d`'s result (None for a failure), leaving `d`'s own chain
    alone: for handing one in-flight operation to several waiters."""
    out = Deferred()

    def both(result):
        out.callback(None if isinstance(result, Failure) else result)
        return result

    d.addBoth(both)
    return out


__all__ = [
    "USAGE_KINDS", "AccountChoice", "Alert", "Counters", "DeviceConfig", "DeviceReport",
    "DeviceRunner", "DeviceSettings", "DeviceState", "DeviceStatus", "HeldJob", "Identity",
    "RunnerPolicy", "Setting", "Supply", "Usage", "UsageReceipt", "configure_device",
    "driver_named", "find_drivers", "fork", "one_of", "parse_settings", "port_number",
    "positive", "setting",
]
