"""The `snmp` driver: a printer watched over SNMP (Printer-MIB, Host Resources MIB).

Every `poll_interval` seconds it asks the printer's agent for its status, detected-error bits,
supplies, life page counter, vendor counters and alerts (one GETBULK for most printers, see
`pcnet.devices.snmp`) and reports them through its services. A poll that gets no answer is a
missed poll; the printer is reported `down` only after `down_after` missed polls in a row, so one
lost datagram never makes a false alarm. What the agent does not report is said to be missing,
never made up (`DeviceStatus.not_reported`, `Counters.not_reported`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pcnet.config import REQUIRED
from pcnet.devices import DeviceState, DeviceStatus, fork, one_of, port_number, positive, setting
from pcnet.devices.printer_mib import SUPPLY_DESCRIPTION, VENDORS, alerts_plan, poll_plan, read_poll
from pcnet.devices.snmp import AUTH_PROTOCOLS, POLLERS, PRIV_PROTOCOLS, SnmpError, SnmpTarget, SnmpTimeout
from pcnet.errors import ConfigError, PcnetError
from pcnet.interfaces import IDevice, IDeviceDriverFactory

log = Logger(namespace="drivers.snmp")


def _at_least(n):
    return lambda v: None if v >= n else f"must be at least {n}"


def _varbinds(v):
    return None if 8 <= v <= 1000 else "must be from 8 to 1000"


SNMP_SETTINGS = (
    setting("host", str, REQUIRED, "the printer's address (name or IP)"),
    setting("port", int, 161, "the agent's UDP port", check=port_number),
    setting("version", str, "2c", "SNMP version: 1, 2c or 3", check=one_of("1", "2c", "3")),
    setting("community", str, "public", "community string (v1, v2c)", secret=True),
    setting("user", str, "", "SNMPv3 user name"),
    setting("auth_protocol", str, "SHA", "SNMPv3 authentication protocol",
            check=one_of(*AUTH_PROTOCOLS)),
    setting("auth_key", str, "", "SNMPv3 authentication pass phrase (empty: none)", secret=True),
    setting("priv_protocol", str, "AES", "SNMPv3 privacy protocol", check=one_of(*PRIV_PROTOCOLS)),
    setting("priv_key", str, "", "SNMPv3 privacy pass phrase (empty: none)", secret=True),
    setting("context", str, "", "SNMPv3 context name"),
    setting("device_index", int, 1, "hrDeviceIndex of the printer in the agent's tables",
            check=_at_least(1)),
    setting("vendor", str, "auto", "vendor counters: auto (found on the first poll), none, or "
            + ", ".join(VENDORS), check=one_of("auto", "none", *VENDORS)),
)
POLL_SETTINGS = (
    setting("poll_interval", (int, float), 60, "seconds between polls", check=positive),
    setting("timeout", (int, float), 2, "seconds to wait for an answer to one request",
            check=positive),
    setting("retries", int, 1, "requests resent after a timeout before a poll is missed",
            check=_at_least(0)),
    setting("down_after", int, 3, "missed polls in a row before the printer is reported down",
            check=_at_least(1)),
    setting("concurrency", int, 64, "polls in flight at once on this server, all SNMP devices "
            "together (the largest value configured applies)", check=positive),
    setting("max_varbinds", int, 48, "variable bindings asked for in one request",
            check=_varbinds),
    setting("describe_every", int, 10, "every this many polls the supplies' descriptions and "
            "capacities are read again (between, only their levels)", check=_at_least(1)),
)


def snmp_target(s) -> SnmpTarget:
    """The `SnmpTarget` of a device's settings (a `ConfigError` for an impossible mix)."""
    try:
        return SnmpTarget(s.host, s.port, s.version, s.community, s.user, s.auth_protocol,
                          s.auth_key, s.priv_protocol, s.priv_key, s.context, float(s.timeout),
                          s.retries, s.max_varbinds)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@implementer(IDevice)
class SnmpPrinter:
    """One SNMP printer: polls on an interval, reports what it reads (see the module doc)."""

    def __init__(self, device, services, reactor):
        self.device = device
        self.name = device.name
        self.services = services
        self.reactor = reactor
        s = device.settings
        self.settings = s
        self.target = snmp_target(s)
        vendors = tuple(VENDORS) if s.vendor == "auto" else (() if s.vendor == "none" else (s.vendor,))
        self.plan = poll_plan(s.device_index, vendors)
        self.missed = 0
        self.reading = None
        self._status = DeviceStatus(DeviceState.STARTING, "not polled yet")
        self._poller = None
        self._loop: task.LoopingCall | None = None
        self._polling: defer.Deferred | None = None
        self._meta: dict | None = None  # the supplies' descriptions from the last full poll
        self._polls = 0

    def start(self):
        self._poller = POLLERS.acquire(self.reactor, self.settings.concurrency)
        self._loop = task.LoopingCall(self.poll)
        self._loop.clock = self.reactor
        done = self._loop.start(float(self.settings.poll_interval), now=True)
        done.addErrback(lambda f: log.failure("device {name!r}: polling stopped", f, name=self.name))
        # In service once the first poll is over, whatever it found (a printer that is off is
        # a printer reported down, not a driver that failed to start).
        return fork(self._polling) if self._polling is not None else defer.succeed(None)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        polling, self._polling = self._polling, None
        if polling is not None and not polling.called:
            polling.cancel()
        if self._poller is not None:
            POLLERS.release(self.reactor)
            self._poller = None
        self._status = DeviceStatus(DeviceState.STOPPED, "stopped")
        return defer.succeed(None)

    def status(self):
        return defer.succeed(self._status)

    def poll(self):
        """One poll now (the interval's polls call this); a Deferred of the `Reading`, or None
        for a missed or failed poll. A poll still running is not doubled."""
        if self._polling is not None and not self._polling.called:
            return fork(self._polling)
        if self._poller is None:
            return defer.succeed(None)
        d = defer.ensureDeferred(self._poll_once())
        d.addCallbacks(self._answered, self._failed)
        self._polling = d
        return d

    def _next_plan(self):
        """A full poll first and every `describe_every` polls (or when the supplies changed);
        light polls between (levels, counters, status, an alert probe): supply descriptions
        and capacities do not change between two polls, and asking for them is most of the
        agent's work."""
        s = self.settings
        if self._meta is None or self._polls % s.describe_every == 0:
            return self.plan, True
        rows = len(self._meta.get("supply.description", {}))
        return poll_plan(s.device_index, self.plan.vendors, supplies=rows), False

    async def _poll_once(self):
        plan, full = self._next_plan()
        self._polls += 1
        scalars, tables = await self._poller.poll(self.target, plan)
        if full:
            self._meta = {k: tables.get(k, {}) for k in SUPPLY_DESCRIPTION}
        else:
            if set(tables.get("supply.level", {})) != set(self._meta["supply.description"]):
                self._meta = None  # supplies came or went: describe them again next time
            tables.update(self._meta or {})
        if scalars.pop("alert.probe", None) is not None:
            _, alert_tables = await self._poller.poll(self.target, alerts_plan(plan.device_index))
            tables.update(alert_tables)
        return plan, scalars, tables

    def _now(self):
        return datetime.fromtimestamp(self.reactor.seconds(), tz=timezone.utc)

    def _answered(self, answer):
        plan, scalars, tables = answer
        reading = read_poll(plan, scalars, tables, at=self._now())
        if self.settings.vendor == "auto" and self.plan.vendors != reading.vendors:
            # Ask later polls only for the vendor counters this agent has.
            self.plan = poll_plan(self.settings.device_index, reading.vendors)
        self.missed = 0
        self._log_changes(self.reading, reading)
        self.reading = reading
        self._status = reading.status
        self._report(reading)
        return reading

    def _log_changes(self, before, after) -> None:
        """A change of state, error bits or alerts is worth a line in the log (not every poll)."""
        was = before.status if before is not None else None
        now = after.status
        if was is None or (was.state, was.error_states) != (now.state, now.error_states):
            log.info("printer {name!r} is {state}: {detail}", name=self.name,
                     state=now.state.value, detail=now.detail or "no detail")
        codes = {(a.severity, a.code) for a in after.alerts}
        old = {(a.severity, a.code) for a in before.alerts} if before is not None else set()
        for severity, code in sorted(codes - old):
            log.info("printer {name!r}: alert {severity} {code}", name=self.name,
                     severity=severity, code=code)

    def _failed(self, failure):
        if failure.check(defer.CancelledError):
            return None
        if failure.check(SnmpTimeout):
            self.missed += 1
            why = failure.value.message
            if self.missed >= self.settings.down_after:
                self._status = DeviceStatus(DeviceState.DOWN, f"{self.missed} polls missed: {why}",
                                            at=self._now())
                if self.missed == self.settings.down_after:
                    log.warn("printer {name!r} is down: {why}", name=self.name, why=self._status.detail)
                    self._report_status(self._status)
            else:
                last = self._status
                if last.state is DeviceState.STARTING:
                    last = DeviceStatus(DeviceState.UNKNOWN, "no answer yet")
                self._status = DeviceStatus(
                    last.state, f"{last.detail.split(' (')[0]} ({self.missed} poll(s) missed)",
                    last.error_states, last.not_reported, last.facts, last.at)
            return None
        if failure.check(SnmpError, PcnetError):
            self._status = DeviceStatus(DeviceState.ERROR, f"SNMP: {failure.value.message}",
                                        at=self._now())
            self._report_status(self._status)
            return None
        log.failure("device {name!r}: poll failed", failure, name=self.name)
        self._status = DeviceStatus(DeviceState.ERROR, "poll failed (see the log)", at=self._now())
        return None

    def _report_status(self, status):
        self._ignore(self.services.report_status(status), "status")

    def _report(self, reading):
        self._report_status(reading.status)
        self._ignore(self.services.report_supplies(list(reading.supplies)), "supplies")
        self._ignore(self.services.report_counters(reading.counters), "counters")
        self._ignore(self.services.report_alerts(list(reading.alerts)), "alerts")

    def _ignore(self, d, what):
        d.addErrback(lambda f: log.warn("device {name!r}: reporting {what} failed: {why}",
                                        name=self.name, what=what, why=f.getErrorMessage()))


@implementer(IPlugin, IDeviceDriverFactory)
class SnmpDriver:
    name = "snmp"
    version = "1.0"
    description = "SNMP printer monitoring: status, errors, supplies, page counters, alerts (RFC 3805)"
    settings = SNMP_SETTINGS + POLL_SETTINGS

    def build(self, device, services, reactor):
        return SnmpPrinter(device, services, reactor)


snmp = SnmpDriver()
