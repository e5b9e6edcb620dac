"""The device runner: starts every configured device's driver and keeps a misbehaving one from
hurting anything else.

Each device gets a supervisor. It builds the driver's `IDevice`, starts it within
`start_timeout`, then asks its `status()` every `status_interval` (each answer within
`status_timeout`). A driver that raises, whose start or status never fires, or that fails
`status_failures` checks in a row is logged, its device marked `error`, stopped (within
`stop_timeout`, whatever it does) and started again after a backoff that doubles up to
`max_backoff`. Nothing a driver does escapes its supervisor: its exceptions are caught, its
Deferreds are bounded by timeouts, and what it leaves behind after it was stopped (timers still
scheduled, connections still open, ports still listening: a leak) is cancelled and logged,
because the reactor it was given is a tracking proxy. A stopped or replaced driver can no longer
call its services either: they are fenced off. So the server keeps serving whatever a driver does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import alsoProvides, providedBy
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from pcnet.devices._records import DeviceState, DeviceStatus
from pcnet.devices._settings import DeviceConfig
from pcnet.errors import DriverError
from pcnet.interfaces import IDevice, IDeviceServices

log = Logger(namespace="pcnet.devices.runner")


@dataclass(frozen=True)
class RunnerPolicy:
    """How patient the runner is with drivers (seconds)."""

    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    status_interval: float = 30.0
    status_timeout: float = 10.0
    status_failures: int = 2
    initial_backoff: float = 2.0
    max_backoff: float = 300.0

    def __post_init__(self):
        for name in ("start_timeout", "stop_timeout", "status_interval", "status_timeout",
                     "initial_backoff", "max_backoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.status_failures < 1:
            raise ValueError("status_failures must be at least 1")

    def backoff(self, failures: int) -> float:
        """Delay before the next start after `failures` failures in a row (1, 2, ...)."""
        return min(self.max_backoff, self.initial_backoff * 2 ** max(0, failures - 1))


@dataclass(frozen=True)
class DeviceReport:
    """What the runner knows about one device: its supervisor's view and the driver's last
    status. `state` is the driver's own state while it is healthy, `error` while it is not."""

    name: str
    driver: str
    state: DeviceState
    detail: str
    failures: int
    retry_in: float | None
    status: DeviceStatus | None


class _DriverReactor:
    """The reactor as a driver sees it: everything passes through, but the timers, connections
    and listening ports it makes are remembered, so that whatever it leaves behind after it was
    stopped can be cancelled (`sweep`)."""

    def __init__(self, reactor):
        self._reactor = reactor
        self._calls: list = []
        self._connectors: list = []
        self._ports: list = []
        alsoProvides(self, *providedBy(reactor))

    def __getattr__(self, name):
        if name.startswith("__"):  # zope.interface's declarations are this proxy's own
            raise AttributeError(name)
        return getattr(self._reactor, name)

    def callLater(self, delay, f, *args, **kw):
        call = self._reactor.callLater(delay, f, *args, **kw)
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(call)
        return call

    def _track(self, bucket: list, thing):
        bucket.append(thing)
        return thing

    def connectTCP(self, *args, **kw):
        return self._track(self._connectors, self._reactor.connectTCP(*args, **kw))

    def connectSSL(self, *args, **kw):
        return self._track(self._connectors, self._reactor.connectSSL(*args, **kw))

    def connectUNIX(self, *args, **kw):
        return self._track(self._connectors, self._reactor.connectUNIX(*args, **kw))

    def listenTCP(self, *args, **kw):
        return self._track(self._ports, self._reactor.listenTCP(*args, **kw))

    def listenUDP(self, *args, **kw):
        return self._track(self._ports, self._reactor.listenUDP(*args, **kw))

    def sweep(self) -> list[str]:
        """Cancel the timers, drop the connections and close the ports still alive; what was
        found, described (empty when the driver cleaned up after itself)."""
        left = []
        calls = [c for c in self._calls if c.active()]
        for c in calls:
            c.cancel()
        if calls:
            left.append(f"{len(calls)} timer(s)")
        connectors = [c for c in self._connectors if getattr(c, "state", "") != "disconnected"]
        for c in connectors:
            try:
                c.disconnect()
            except Exception:  # already gone, or not ours to judge
                pass
        if connectors:
            left.append(f"{len(connectors)} connection(s)")
        ports = [p for p in self._ports if getattr(p, "connected", True)]
        for p in ports:
            try:
                p.stopListening()
            except Exception:
                pass
        if ports:
            left.append(f"{len(ports)} listening port(s)")
        self._calls, self._connectors, self._ports = [], [], []
        return left


class _FencedServices:
    """A device's services until its driver instance is stopped; after that every call fails,
    so a driver that leaked a timer or a loop cannot charge, release or report any more."""

    def __init__(self, services, name: str):
        self._services = services
        self._name = name
        self._open = True
        alsoProvides(self, IDeviceServices)

    @property
    def device(self):
        return self._services.device

    def close(self) -> None:
        self._open = False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        target = getattr(self._services, name)
        if not callable(target):
            return target

        def call(*args, **kw):
            if not self._open:
                return defer.fail(DriverError(
                    f"device {self._name!r}: this driver instance was stopped; its calls are refused"))
            return target(*args, **kw)

        return call


def _describe(failure_or_exc) -> str:
    exc = getattr(failure_or_exc, "value", failure_or_exc)
    if isinstance(exc, defer.TimeoutError) or isinstance(exc, defer.CancelledError):
        return "did not answer in time"
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class _Supervisor:
    """Runs one device's driver, restarting it with backoff (see the module doc)."""

    def __init__(self, runner: DeviceRunner, config: DeviceConfig, factory):
        self.runner = runner
        self.config = config
        self.factory = factory
        self.clock = runner.clock
        self.policy = runner.policy
        self.state = DeviceState.STOPPED
        self.detail = ""
        self.failures = 0
        self.status: DeviceStatus | None = None
        self._gen = 0
        self._instance = None
        self._proxy: _DriverReactor | None = None
        self._fence: _FencedServices | None = None
        self._retry = None
        self._check = None
        self._check_failures = 0
        self._running = False
        self._disposing: list[Deferred] = []

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._attempt()

    def stop(self) -> Deferred:
        self._running = False
        self._gen += 1
        for call in (self._retry, self._check):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._check = None
        self._dispose()
        self.state, self.detail = DeviceState.STOPPED, "stopped"
        pending, self._disposing = self._disposing, []
        return defer.DeferredList(pending, consumeErrors=True)

    def report(self) -> DeviceReport:
        retry_in = None
        if self._retry is not None and self._retry.active():
            retry_in = max(0.0, self._retry.getTime() - self.clock.seconds())
        state = self.state
        if state is DeviceState.UP and self.status is not None:
            state = self.status.state
        return DeviceReport(self.config.name, self.config.driver, state, self.detail,
                            self.failures, retry_in, self.status)

    # --- starting ------------------------------------------------------------------------

    def _attempt(self) -> None:
        self._retry = None
        if not self._running:
            return
        self._gen += 1
        gen = self._gen
        self.state, self.detail = DeviceState.STARTING, "starting"
        try:
            services = self.runner.services_for(self.config)
            self._fence = _FencedServices(services, self.config.name)
            self._proxy = _DriverReactor(self.runner.reactor)
            device = self.factory.build(self.config, self._fence, self._proxy)
            verifyObject(IDevice, device)
        except Invalid as e:
            self._failed(gen, "build", f"its device object is not an IDevice: {e}")
            return
        except Exception as e:
            log.failure("device {name!r}: driver {driver!r} failed to build the device",
                        name=self.config.name, driver=self.config.driver)
            self._failed(gen, "build", _describe(e))
            return
        self._instance = device
        try:
            d = defer.maybeDeferred(device.start)
        except Exception as e:  # maybeDeferred catches; this is belt and braces
            self._failed(gen, "start", _describe(e))
            return
        d.addTimeout(self.policy.start_timeout, self.clock)
        d.addCallbacks(lambda _: self._started(gen), lambda f: self._failed(gen, "start", _describe(f)))

    def _started(self, gen: int) -> None:
        if gen != self._gen:
            return
        self.state, self.detail = DeviceState.UP, "running"
        log.info("device {name!r} ({driver}) started", name=self.config.name,
                 driver=self.config.driver)
        self._schedule_check(gen)

    # --- watching --------------------------------------------------------------------------

    def _schedule_check(self, gen: int) -> None:
        if gen == self._gen and self._running:
            self._check = self.clock.callLater(self.policy.status_interval, self._check_status, gen)

    def _check_status(self, gen: int) -> None:
        self._check = None
        if gen != self._gen or self._instance is None:
            return
        try:
            d = defer.maybeDeferred(self._instance.status)
        except Exception as e:
            self._status_failed(gen, _describe(e))
            return
        d.addTimeout(self.policy.status_timeout, self.clock)
        d.addCallbacks(lambda s: self._status_ok(gen, s), lambda f: self._status_failed(gen, _describe(f)))

    def _status_ok(self, gen: int, status) -> None:
        if gen != self._gen:
            return
        if not isinstance(status, DeviceStatus):
            self._status_failed(gen, f"status() gave {type(status).__name__}, not a DeviceStatus")
            return
        self.status = status
        self._check_failures = 0
        self.failures = 0  # healthy again: the next failure starts the backoff afresh
        self.state, self.detail = DeviceState.UP, "running"
        self._schedule_check(gen)

    def _status_failed(self, gen: int, why: str) -> None:
        if gen != self._gen:
            return
        self._check_failures += 1
        log.warn("device {name!r} ({driver}): status check failed ({n} of {limit}): {why}",
                 name=self.config.name, driver=self.config.driver, n=self._check_failures,
                 limit=self.policy.status_failures, why=why)
        if self._check_failures >= self.policy.status_failures:
            self._check_failures = 0
            self._failed(gen, "status", why)
        else:
            self._schedule_check(gen)

    # --- failing -----------------------------------------------------------------------------

    def _failed(self, gen: int, stage: str, why: str) -> None:
        if gen != self._gen or not self._running:
            return
        self._gen += 1  # whatever the failed instance still does is ignored from now on
        self.failures += 1
        delay = self.policy.backoff(self.failures)
        self.state = DeviceState.ERROR
        self.detail = f"driver {stage} failed: {why}"
        log.error("device {name!r} ({driver}) in error: {stage} failed: {why}; "
                  "trying again in {delay:g} s (failure {n})",
                  name=self.config.name, driver=self.config.driver, stage=stage, why=why,
                  delay=delay, n=self.failures)
        self._dispose()
        self._retry = self.clock.callLater(delay, self._attempt)

    def _dispose(self) -> None:
        """Stop the current instance, bounded in time, then sweep what it left behind."""
        instance, proxy, fence = self._instance, self._proxy, self._fence
        self._instance = self._proxy = self._fence = None
        if fence is not None:
            fence.close()
        if instance is None:
            if proxy is not None:
                proxy.sweep()
            return
        name, driver = self.config.name, self.config.driver
        d = defer.maybeDeferred(instance.stop)
        d.addTimeout(self.policy.stop_timeout, self.clock)

        def failed(f):
            log.warn("device {name!r} ({driver}): stop failed: {why}", name=name, driver=driver,
                     why=_describe(f))

        def sweep(_):
            left = proxy.sweep() if proxy is not None else []
            if left:
                log.warn("device {name!r} ({driver}): the driver left {what} behind after it "
                         "was stopped; cancelled", name=name, driver=driver, what=", ".join(left))

        d.addErrback(failed)
        d.addBoth(sweep)
        self._disposing = [x for x in self._disposing if not x.called] + [d]


class DeviceRunner(Service):
    """Runs the configured devices (a service in the Application Server's or Site Server's tree).

    `drivers` maps driver names to `IDeviceDriverFactory` providers (`find_drivers()`);
    `services_for(config)` gives the `IDeviceServices` bound to one device. A device whose
    driver is not installed is reported in error and not started.
    """

    def __init__(self, devices: Iterable[DeviceConfig], *, drivers: Mapping,
                 services_for: Callable[[DeviceConfig], object], reactor,
                 policy: RunnerPolicy | None = None):
        self.reactor = self.clock = reactor
        self.policy = policy or RunnerPolicy()
        self.services_for = services_for
        self.drivers = drivers
        self._supervisors: dict[str, _Supervisor] = {}
        self._missing: dict[str, DeviceReport] = {}
        for config in devices:
            self.add(config)

    def add(self, config: DeviceConfig) -> None:
        """Run another device (started at once if the runner is running)."""
        if config.name in self._supervisors or config.name in self._missing:
            raise ValueError(f"device {config.name!r} is configured twice")
        factory = self.drivers.get(config.driver)
        if factory is None:
            installed = ", ".join(sorted(self.drivers)) or "none"
            why = f"driver {config.driver!r} is not installed (installed: {installed})"
            log.error("device {name!r}: {why}", name=config.name, why=why)
            self._missing[config.name] = DeviceReport(config.name, config.driver,
                                                      DeviceState.ERROR, why, 0, None, None)
            return
        supervisor = self._supervisors[config.name] = _Supervisor(self, config, factory)
        if self.running:
            supervisor.start()

    def remove(self, name: str) -> Deferred:
        """Stop and forget a device."""
        self._missing.pop(name, None)
        supervisor = self._supervisors.pop(name, None)
        return supervisor.stop() if supervisor is not None else defer.succeed(None)

    def reports(self) -> dict[str, DeviceReport]:
        out = dict(self._missing)
        out.update((name, s.report()) for name, s in self._supervisors.items())
        return out

    def startService(self):
        super().startService()
        for supervisor in self._supervisors.values():
            supervisor.start()

    def stopService(self):
        super().stopService()
        return defer.DeferredList([s.stop() for s in self._supervisors.values()],
                                  consumeErrors=True)
