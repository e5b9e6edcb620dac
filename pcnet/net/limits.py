"""Bounds on what strangers can make a server hold: connection caps, quiet logs, open files.

Everything a server accepts before it knows who is talking is bounded here or next to it:

- `ConnectionLimits`: how many connections a server holds at once, in total and per source
  address, counted from accept (TLS handshakes, HTTP keep-alive and pcnet/1 sessions alike) to
  close. The listener (`pcnet.net.listener`) asks it before it builds a protocol, so an
  over-cap connection is closed by the port at once, before any TLS or HTTP state exists.
- `source_key`: what "the same source" means: an IPv4 address, or an IPv6 /64 (one host or
  one LAN's worth of IPv6 addresses is a /64, so per-address bounds would be void without it).
- `RateLimitedLog`: log lines about strangers' connections (refused, timed out, too long) at
  most once per interval per kind, with a count of the ones left out, so a flood of hostile
  connections cannot become a flood of log lines.
- `StrangerWork`: expensive work that strangers can trigger in bursts (TLS handshakes, closing
  connections whose deadline passed) runs at most `budget` seconds per reactor turn, after the
  turn's other events, so a wave of them delays established connections and plain HTTP by
  that much at most instead of by the whole wave.
- `raise_open_file_limit`: lift the soft descriptor limit to the hard one at start-up, so that
  the caps, not the descriptor limit, decide when connections are refused.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pcnet.net.registry import peer_ip

log = Logger(namespace="pcnet.net.limits")

#: Descriptors kept back from the connection cap for the database, logs, spool files and threads.
RESERVED_DESCRIPTORS = 256


def source_key(peer) -> str:
    """The key per-source bounds are counted under: an IPv4 address, an IPv6 address's /64,
    or (for a non-IP peer, e.g. a Unix socket or a test transport) its text."""
    ip = peer_ip(peer)
    if ip is None:
        host = getattr(peer, "host", None)
        return str(host if host is not None else peer)
    if ip.version == 6:
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class RateLimitedLog:
    """Warnings about strangers, at most one per `interval` seconds for each kind of event.

    The first event of a kind is logged at once; later ones within the interval are counted,
    and the next line logged for that kind says how many were left out.
    """

    def __init__(self, clock: IReactorTime, logger: Logger, *, interval: float = 60.0,
                 level: str = "warn"):
        self.clock = clock
        self.interval = interval
        self._emit = getattr(logger, level)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def event(self, kind: str, fmt: str, **fields) -> bool:
        """Log `fmt` (a Twisted log format) unless a `kind` line went out within the interval.
        True if it was logged."""
        now = self.clock.seconds()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        left_out = self._suppressed.pop(kind, 0)
        if left_out:
            fmt += " ({left_out} more like this in the last {interval:g} s were not logged)"
            fields.update(left_out=left_out, interval=self.interval)
        self._emit(fmt, **fields)
        return True

    def suppressed(self, kind: str) -> int:
        """Events of `kind` counted but not yet reported."""
        return self._suppressed.get(kind, 0)


class StrangerWork:
    """A queue of callables run in order, at most `budget` seconds' worth per reactor turn.

    A TLS handshake costs the server a key exchange and a signature (about a millisecond of
    CPU); 2,000 connections that open (or time out) together would otherwise be handled in one
    go, holding up every other connection for seconds. Queued here, they take turns with the
    rest of the reactor's work. `timer` measures the budget (real time, not the clock: it is
    the CPU the work takes that matters).
    """

    def __init__(self, clock: IReactorTime, *, budget: float = 0.02,
                 timer: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.budget = budget
        self._timer = timer
        self._queue: deque[Callable[[], object]] = deque()
        self._scheduled = None
        self.deferred_turns = 0   # turns that left work for later (for figures and tests)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, work: Callable[[], object]) -> None:
        self._queue.append(work)
        if self._scheduled is None:
            self._scheduled = self.clock.callLater(0, self._run)

    def _run(self) -> None:
        self._scheduled = None
        queue, timer = self._queue, self._timer
        stop = timer() + self.budget
        while queue:
            work = queue.popleft()
            try:
                work()
            except Exception:
                log.failure("work for a connection failed")
            if timer() >= stop:
                break
        if queue:
            self.deferred_turns += 1
            self._scheduled = self.clock.callLater(0, self._run)


class ConnectionLimits:
    """Caps on connections held at once: `max_total` in all, `max_per_source` per `source_key`.

    `admit(addr)` returns a ticket (the source key) or None when a cap is reached; the caller
    must `release(ticket)` exactly once when that connection is gone. One instance is shared by
    all of a server's listeners, so the caps hold across ports.
    """

    def __init__(self, *, max_total: int, max_per_source: int, clock: IReactorTime,
                 log_interval: float = 60.0):
        if max_total < 1 or max_per_source < 1:
            raise ValueError("connection caps must be at least 1")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.total = 0
        self.refused = 0
        self._per_source: dict[str, int] = {}
        self.log = RateLimitedLog(clock, log, interval=log_interval)

    def admit(self, addr) -> str | None:
        key = source_key(addr)
        held = self._per_source.get(key, 0)
        if self.total >= self.max_total:
            self.refused += 1
            self.log.event("total", "refusing connections: {total} open, the cap is {cap} "
                           "([server] max_connections); latest from {source}",
                           total=self.total, cap=self.max_total, source=key)
            return None
        if held >= self.max_per_source:
            self.refused += 1
            self.log.event("source", "refusing connections from {source}: {held} open, the cap "
                           "per address is {cap} ([server] max_connections_per_address)",
                           source=key, held=held, cap=self.max_per_source)
            return None
        self._per_source[key] = held + 1
        self.total += 1
        return key

    def release(self, key: str) -> None:
        held = self._per_source.get(key, 0)
        if held <= 0:
            raise RuntimeError(f"released a connection from {key} that was never admitted")
        if held == 1:
            del self._per_source[key]  # the table holds only sources with open connections
        else:
            self._per_source[key] = held - 1
        self.total -= 1

    def held(self, addr_or_key) -> int:
        key = addr_or_key if isinstance(addr_or_key, str) else source_key(addr_or_key)
        return self._per_source.get(key, 0)

    @property
    def sources(self) -> int:
        return len(self._per_source)

    def fit_to_descriptors(self, limit: int) -> bool:
        """Lower `max_total` so it fits in `limit` open files (less what the rest of the
        server needs). True if it was lowered."""
        room = max(1, limit - RESERVED_DESCRIPTORS)
        if self.max_total <= room:
            return False
        self.max_total = room
        return True


def raise_open_file_limit() -> tuple[int, int, int]:
    """Raise RLIMIT_NOFILE's soft limit to its hard limit: (before, after, hard).

    A server's connection caps only decide if the process may open that many descriptors;
    distributions start services with a soft limit of 1,024 and a far higher hard one.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft, hard
    return soft, target, hard
