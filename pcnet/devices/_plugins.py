"""Finding drivers: `getPlugins(IDeviceDriverFactory, drivers)`, checked and indexed by name."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from pcnet.devices._settings import NAME, check_schema
from pcnet.errors import ConfigError
from pcnet.interfaces import IDeviceDriverFactory

log = Logger(namespace="pcnet.devices")


def find_drivers(package=None) -> dict:
    """The installed drivers by name: pcnet's own and those of every distribution that installs
    a module into the `drivers` package. A plugin that does not provide the interface properly
    (a missing attribute, a bad name or schema) or whose name is taken is logged and left out:
    one vendor's broken driver must not keep the others from loading."""
    if package is None:
        import drivers as package
    found: dict = {}
    for factory in getPlugins(IDeviceDriverFactory, package):
        try:
            verifyObject(IDeviceDriverFactory, factory)
            if not isinstance(factory.name, str) or not NAME.match(factory.name):
                raise ValueError(f"driver name {factory.name!r}: lowercase letters, digits and '-'")
            check_schema(factory.settings)
        except (Invalid, ValueError, TypeError) as e:
            log.error("device driver {factory!r} left out: {why}", factory=factory, why=str(e))
            continue
        if factory.name in found:
            log.error("device driver {name!r} is installed twice ({a!r}, {b!r}); keeping the first",
                      name=factory.name, a=found[factory.name], b=factory)
            continue
        found[factory.name] = factory
    return found


def driver_named(name: str, drivers: dict | None = None):
    """The driver called `name`, or a `ConfigError` listing those installed."""
    drivers = find_drivers() if drivers is None else drivers
    try:
        return drivers[name]
    except KeyError:
        raise ConfigError(f"no device driver {name!r} is installed "
                          f"(installed: {', '.join(sorted(drivers)) or 'none'})") from None
