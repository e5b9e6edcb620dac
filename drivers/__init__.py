"""Device driver plugins: MFDs, SNMP printers, network card readers (ARCHITECTURE §6).

Built in: `snmp`, `card-reader`, `copy-session`, `mfd` (docs/drivers.md).

Drivers are `twisted.plugin` plugins found with `getPlugins(IDeviceDriverFactory, drivers)`
(`pcnet.devices.find_drivers()`). The
package's `__path__` is extended with every `drivers/` directory on `sys.path`, so a vendor can
ship a driver as a separate distribution that installs its own `drivers/vendor_x.py` (and, like
`twisted/plugins`, has no `__init__.py` of its own there).
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
