"""A driver's configuration schema and the typed settings a device gets from it.

A driver declares its keys as `Setting`s (the `pcnet.config.Key` of the server's own files,
plus a name and a `secret` flag); `parse_settings` checks a device's raw settings (a TOML table
or an API body) against them with the same rules and messages as the server's configuration, and
returns `DeviceSettings`: read-only, attribute access, and a `repr`/`redacted()` that never shows
a secret. `DeviceConfig` is what the core knows about one configured device.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pcnet.config import REQUIRED, Key, checked_value, hidden
from pcnet.errors import ConfigError

#: Driver and device names: what an administrator types and logs show.
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Setting(Key):
    """One key of a driver's configuration. `secret` ones (passwords, keys, community strings)
    are never logged, shown in an error message, or returned by `redacted()`."""

    name: str = ""
    secret: bool = False

    def __post_init__(self):
        if not re.match(r"^[a-z][a-z0-9_]*$", self.name):
            raise ValueError(f"setting name {self.name!r}: lowercase letters, digits and _")
        if self.secret and self.shown is None:
            object.__setattr__(self, "shown", hidden)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class DeviceSettings(Mapping):
    """A device's validated settings: `settings.port` or `settings["port"]`, read-only."""

    def __init__(self, values: Mapping[str, Any], secrets: Iterable[str] = ()):
        self._values = dict(values)
        self._secrets = frozenset(secrets)

    def __getitem__(self, name: str):
        return self._values[name]

    def __getattr__(self, name: str):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def redacted(self) -> dict[str, Any]:
        """The settings fit for a log line or an API reply: secrets as "(secret)"."""
        return {k: ("(secret)" if k in self._secrets else v) for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"DeviceSettings({self.redacted()!r})"


def check_schema(settings: Iterable[Setting]) -> dict[str, Setting]:
    """The schema by name; a driver bug (a duplicate name, not a `Setting`) is a ValueError."""
    out: dict[str, Setting] = {}
    for s in settings:
        if not isinstance(s, Setting):
            raise ValueError(f"{s!r} is not a pcnet.devices.Setting")
        if s.name in out:
            raise ValueError(f"setting {s.name!r} declared twice")
        out[s.name] = s
    return out


def parse_settings(schema: Iterable[Setting], raw: Mapping[str, Any], *, where: str) -> DeviceSettings:
    """Check `raw` against the schema: unknown keys, missing required keys, wrong types and
    failed checks are a `ConfigError` starting with `where` (e.g. "pcnet.toml: device 'hall'")
    and naming the key, never showing a secret value."""
    keys = check_schema(schema)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: settings must be a table of keys and values")
    for name in raw:
        if name not in keys:
            known = ", ".join(keys) or "none"
            raise ConfigError(f"{where}: unknown setting {name!r} (known: {known})")
    values = {name: checked_value(f"{where}: {name}", key, raw.get(name, key.default))
              for name, key in keys.items()}
    return DeviceSettings(values, (k.name for k in keys.values() if k.secret))


@dataclass(frozen=True)
class DeviceConfig:
    """One configured device: its name, driver, typed settings, and where it belongs.

    `printer_id`/`printer_name`: the printer it serves (a card reader releases to it, an SNMP
    poller watches it, a copier charges by its cost model); `site`: the Site Server it runs
    under, None for the Application Server.
    """

    name: str
    driver: str
    settings: DeviceSettings = field(default_factory=lambda: DeviceSettings({}))
    printer_id: int | None = None
    printer_name: str = ""
    site: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not DEVICE_NAME.match(self.name):
            raise ConfigError(f"device name {self.name!r}: 1 to 128 letters, digits, '.', '_' "
                              "or '-', starting with a letter or digit")


def setting(name: str, type_, default, help: str, *, check=None, secret: bool = False) -> Setting:
    """`Setting` with the name first, as a schema reads best:
    `setting("port", int, 7778, "the reader's TCP port", check=port_number)`."""
    return Setting(type_, default, help, check, name=name, secret=secret)


def port_number(v) -> str | None:
    return None if 1 <= v <= 65535 else "must be a port number from 1 to 65535"


def positive(v) -> str | None:
    return None if v > 0 else "must be greater than zero"


def one_of(*options):
    def check(v):
        return None if v in options else f"must be one of {', '.join(map(str, options))}"
    return check
