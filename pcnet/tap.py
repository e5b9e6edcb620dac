"""`twistd pcnet ROLE --config PATH`: the twistd entry point for pcnet's roles.

Each role is a sub-command. A configuration problem or an unreachable database stops start-up
here, before the reactor runs, with one line on stderr naming the file, key or address, and
exit status 1 (never a traceback).
"""

from __future__ import annotations

import sys

from twisted.python import usage

from pcnet.errors import PcnetError


class _RoleOptions(usage.Options):
    optParameters = [["config", "c", None, "path of the node's pcnet.toml"]]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config PATH is required")


class AppOptions(_RoleOptions):
    """Options of the Application Server role."""


class ProviderOptions(_RoleOptions):
    """Options of the Print Provider role."""


class Options(usage.Options):
    synopsis = "ROLE --config PATH"
    subCommands = [
        ["app", None, AppOptions, "Application Server: the system of record"],
        ["provider", None, ProviderOptions, "Print Provider on a CUPS print server"],
    ]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("choose a role: " + ", ".join(c[0] for c in self.subCommands))


def _fail(message: str):
    sys.stderr.write(f"pcnet: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def makeService(options):
    from twisted.internet import reactor

    role, sub = options.subCommand, options.subOptions
    try:
        if role == "app":
            from pcnet.app.service import make_app_service

            return make_app_service(sub["config"], reactor)
        if role == "provider":
            from pcnet.provider.service import make_provider_service

            return make_provider_service(sub["config"], reactor)
    except PcnetError as e:
        _fail(e.message)
    _fail(f"unknown role {role!r}")
