"""Sign-in throttling shared by everything that checks a person's password or PIN.

The admin API's `/me` routes use it today; the web console, XML-RPC and device (card/PIN)
sign-ins are to use the same instance, so one budget covers every way in. The interface needs
nothing from HTTP: a source (`pcnet.net.limits.source_key` of the peer's address), a username
and the secret.

    attempt = signin.begin(source, username)        # TooManyAttempts (429) before any work
    try:
        user = await store.get_user_by_name(username)
    except NotFound:
        user = None
    except BaseException:
        attempt.abandon()                           # neither a success nor a failure
        raise
    ok = await attempt.check(password, user.password_hash if user else None,
                             allowed=user is not None and not user.disabled)

What it bounds, and why:

- **CPU**: password hashes (scrypt, ~50 ms of a core and 16 MiB each) run at most
  `concurrent_hashes` at a time and `hashes_per_second` on average (a token bucket), whoever
  asks. Sign-ins waiting for a hash slot are served round-robin across source addresses, so
  one address with many requests waits behind itself, not in front of everyone; at most
  `waiting_per_address` wait per address and `max_waiting` in all (else 429 at once), and none
  longer than `max_wait` seconds.
- **Guessing**: failures are counted per source address (a token bucket of `address_failures`
  per `failure_window`) and per (address, username) pair (`user_failures` within
  `failure_window` lock that pair for `lockout` seconds). There is no lock per username alone,
  so a stranger cannot lock a user out by failing on purpose from elsewhere.
- **Real users under attack**: a pair that signed in successfully is remembered for
  `trusted_for` seconds; its sign-ins skip the address's failure budget (a neighbour behind
  the same NAT who fails on purpose does not lock it out) and go ahead of strangers in the
  queue for hash slots.
- **Unknown usernames** take exactly the same path and cost (a hash against a dummy), so the
  answer, its timing and the throttling do not tell whether a username exists.
- **Memory**: each table (addresses, pairs, trusted pairs) keeps at most `max_tracked`
  entries, forgetting the least recently used (pairs with nothing to remember are dropped at
  once); the wait queues hold at most `max_waiting`.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from pcnet.domain.secrets import verify_secret
from pcnet.errors import PcnetError
from pcnet.net.limits import RateLimitedLog

log = Logger(namespace="pcnet.app.throttle")

# Checked when the user is unknown or has no password, so that those answers take as long as a
# wrong password (the reply does not tell whether a username exists).
NO_USER_HASH = "scrypt$16384$8$1$M6AW7kQuFZwShAQEfRJp9g$Oi6K-PsD04CcLnLAWGIUBC3MvYUZD3TTAu7tZWU-g_g"


class TooManyAttempts(PcnetError):
    """Sign-in refused before the password is checked; retry after `retry_after` seconds."""

    code = "too_many_attempts"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class SignInPolicy:
    """The throttle's settings ([signin] in pcnet.toml; see the module's doc)."""

    hashes_per_second: float = 10.0
    concurrent_hashes: int = 2
    max_waiting: int = 100
    waiting_per_address: int = 4
    max_wait: float = 10.0
    address_failures: int = 50
    user_failures: int = 5
    failure_window: float = 900.0
    lockout: float = 300.0
    trusted_for: float = 30 * 86400.0
    max_tracked: int = 10_000

    def __post_init__(self):
        if self.hashes_per_second <= 0 or self.max_wait <= 0 or self.failure_window <= 0:
            raise ValueError("hashes_per_second, max_wait and failure_window must be positive")
        for name in ("concurrent_hashes", "max_waiting", "waiting_per_address",
                     "address_failures", "user_failures", "max_tracked"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


class _Bucket:
    """A token bucket: `capacity` tokens, refilled at `rate` per second."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, capacity: float, now: float):
        self.tokens = capacity
        self.stamp = now

    def level(self, capacity: float, rate: float, now: float) -> float:
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        return self.tokens

    def wait_for_one(self, rate: float) -> float:
        return max(0.0, (1 - self.tokens) / rate)


class _Pair:
    __slots__ = ("failures", "first_failure", "locked_until", "pending")

    def __init__(self):
        self.failures = 0
        self.first_failure = 0.0
        self.locked_until = 0.0
        self.pending = 0   # sign-ins under way: a burst of parallel guesses counts at once

    def idle(self, window: float, now: float) -> bool:
        return self.pending == 0 and self.locked_until <= now and (
            self.failures == 0 or now - self.first_failure >= window)


class _Waiter:
    __slots__ = ("deferred", "source", "timer")

    def __init__(self, deferred: Deferred, source: str):
        self.deferred = deferred
        self.source = source
        self.timer = None


def _bounded_put(table: OrderedDict, key, value, limit: int) -> None:
    """Insert (or refresh) `key` as the newest entry of a table of at most `limit` entries,
    forgetting the least recently used ones: O(1), whatever a stranger sends."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


class SignInThrottle:
    """The sign-in throttle of one server (see the module's doc). `clock` is an IReactorTime;
    if it also provides IReactorThreads, hashes run in its thread pool."""

    def __init__(self, clock: IReactorTime, policy: SignInPolicy | None = None, *, hasher=None):
        self.clock = clock
        self.policy = p = policy or SignInPolicy()
        self._hasher = hasher or _thread_hasher(clock)
        now = clock.seconds()
        self._hash_budget = _Bucket(max(1.0, p.hashes_per_second), now)
        self._hashing = 0
        self._trusted_queue: deque[_Waiter] = deque()
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        self._waiting = 0
        self._wakeup = None
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.hashes = 0  # hashes run so far (for figures and tests)
        # Lock-outs are worth a warning, but strangers choose how many there are.
        self._log = RateLimitedLog(clock, log)

    # --- the interface ------------------------------------------------------------------------

    def begin(self, source: str, username: str) -> SignInAttempt:
        """Start a sign-in from `source` as `username`, or raise TooManyAttempts (cheaply: no
        hash, no database)."""
        p, now = self.policy, self.clock.seconds()
        key = (source, username.casefold())
        trusted = self._is_trusted(key, now)
        pair = self._pairs.get(key)
        if pair is not None:
            if pair.locked_until > now:
                raise TooManyAttempts(f"too many failed sign-ins as {username} from this "
                                      "address; try again later",
                                      retry_after=pair.locked_until - now)
            if pair.failures and now - pair.first_failure >= p.failure_window:
                pair.failures = 0
            if pair.failures + pair.pending >= p.user_failures:
                raise TooManyAttempts(f"too many sign-ins as {username} at once; try again later",
                                      retry_after=1)
        if not trusted:
            bucket = self._addresses.get(source)
            if bucket is not None and bucket.level(p.address_failures, self._address_rate, now) < 1:
                raise TooManyAttempts("too many failed sign-ins from this address; try again later",
                                      retry_after=bucket.wait_for_one(self._address_rate))
            # No room to wait for a hash: say so now, before the caller looks the user up.
            self._check_room(source, trusted)
        if pair is None:
            pair = _Pair()
        pair.pending += 1
        _bounded_put(self._pairs, key, pair, p.max_tracked)
        return SignInAttempt(self, source, key, trusted, pair)

    @property
    def waiting(self) -> int:
        """Sign-ins waiting for a hash slot now."""
        return self._waiting

    @property
    def hashing(self) -> int:
        return self._hashing

    def tracked(self) -> dict[str, int]:
        """How many entries each table holds (bounded by `max_tracked`)."""
        return {"addresses": len(self._addresses), "pairs": len(self._pairs),
                "trusted": len(self._trusted), "queued_addresses": len(self._queues)}

    # --- outcomes -----------------------------------------------------------------------------

    @property
    def _address_rate(self) -> float:
        return self.policy.address_failures / self.policy.failure_window

    def _is_trusted(self, key, now: float) -> bool:
        until = self._trusted.get(key)
        if until is None:
            return False
        if until <= now:
            del self._trusted[key]
            return False
        return True

    def _failed(self, attempt: SignInAttempt) -> None:
        p, now = self.policy, self.clock.seconds()
        if not attempt.trusted:
            bucket = self._addresses.get(attempt.source)
            if bucket is None:
                bucket = _Bucket(p.address_failures, now)
            bucket.level(p.address_failures, self._address_rate, now)
            bucket.tokens = max(0.0, bucket.tokens - 1)
            _bounded_put(self._addresses, attempt.source, bucket, p.max_tracked)
        pair = attempt.pair
        pair.pending -= 1
        if pair.failures and now - pair.first_failure >= p.failure_window:
            pair.failures = 0
        if pair.failures == 0:
            pair.first_failure = now
        pair.failures += 1
        if pair.failures >= p.user_failures:
            pair.failures, pair.locked_until = 0, now + p.lockout
            self._log.event("lockout", "sign-ins as {username!r} from {source} refused for "
                            "{seconds:.0f} s after {limit} failures", username=attempt.key[1],
                            source=attempt.source, seconds=p.lockout, limit=p.user_failures)
        if self._pairs.get(attempt.key) is pair:
            self._pairs.move_to_end(attempt.key)

    def _abandoned(self, attempt: SignInAttempt) -> None:
        attempt.pair.pending -= 1
        self._forget_if_idle(attempt)

    def _forget_if_idle(self, attempt: SignInAttempt) -> None:
        pair = attempt.pair
        if self._pairs.get(attempt.key) is pair and pair.idle(self.policy.failure_window,
                                                              self.clock.seconds()):
            del self._pairs[attempt.key]

    def _succeeded(self, attempt: SignInAttempt) -> None:
        p, now = self.policy, self.clock.seconds()
        pair = attempt.pair
        pair.pending -= 1
        pair.failures = 0
        self._forget_if_idle(attempt)
        _bounded_put(self._trusted, attempt.key, now + p.trusted_for, p.max_tracked)

    # --- hash slots: bounded, rate-limited, fair across addresses ---------------------------

    def _acquire(self, attempt: SignInAttempt) -> Deferred:
        p = self.policy
        if not self._trusted_queue and not self._queues and self._can_start():
            self._start_one()
            return succeed(None)
        self._check_room(attempt.source, attempt.trusted)
        waiter = _Waiter(Deferred(), attempt.source)
        if attempt.trusted:
            self._trusted_queue.append(waiter)
        else:
            queue = self._queues.get(attempt.source)
            if queue is None:
                queue = self._queues[attempt.source] = deque()
            queue.append(waiter)
        self._waiting += 1
        waiter.timer = self.clock.callLater(p.max_wait, self._gave_up, waiter, attempt.trusted)
        self._dispatch()
        return waiter.deferred

    def _check_room(self, source: str, trusted: bool) -> None:
        """TooManyAttempts unless a sign-in from `source` may wait for a hash slot. Users who
        signed in from their address before have a queue of their own (as long), so strangers
        filling theirs cannot turn them away."""
        p = self.policy
        if trusted:
            full = len(self._trusted_queue) >= p.max_waiting
        else:
            queue = self._queues.get(source)
            full = (self._waiting - len(self._trusted_queue) >= p.max_waiting
                    or queue is not None and len(queue) >= p.waiting_per_address)
        if full:
            raise TooManyAttempts("the server is busy checking other sign-ins; try again shortly",
                                  retry_after=max(1.0, self._waiting / p.hashes_per_second))

    def _can_start(self) -> bool:
        p = self.policy
        if self._hashing >= p.concurrent_hashes:
            return False
        return self._hash_budget.level(max(1.0, p.hashes_per_second), p.hashes_per_second,
                                       self.clock.seconds()) >= 1

    def _start_one(self) -> None:
        self._hash_budget.tokens -= 1
        self._hashing += 1
        self.hashes += 1

    def _next_waiter(self) -> _Waiter | None:
        if self._trusted_queue:
            return self._trusted_queue.popleft()
        if not self._queues:
            return None
        source, queue = next(iter(self._queues.items()))
        waiter = queue.popleft()
        if queue:
            self._queues.move_to_end(source)   # round-robin: this address goes to the back
        else:
            del self._queues[source]
        return waiter

    def _dispatch(self) -> None:
        while self._waiting and self._can_start():
            waiter = self._next_waiter()
            self._waiting -= 1
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            self._start_one()
            waiter.deferred.callback(None)
        if self._waiting and self._hashing < self.policy.concurrent_hashes and self._wakeup is None:
            # Waiting only for the budget to refill.
            delay = self._hash_budget.wait_for_one(self.policy.hashes_per_second)
            self._wakeup = self.clock.callLater(delay + 1e-6, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        self._dispatch()

    def _gave_up(self, waiter: _Waiter, trusted: bool) -> None:
        waiter.timer = None
        queue = self._trusted_queue if trusted else self._queues.get(waiter.source)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        if not trusted and not queue:
            del self._queues[waiter.source]
        self._waiting -= 1
        waiter.deferred.errback(TooManyAttempts(
            "the server is busy checking other sign-ins; try again shortly", retry_after=1))

    def _release(self) -> None:
        self._hashing -= 1
        self._dispatch()


class SignInAttempt:
    """One sign-in under way (from `SignInThrottle.begin`): `check` it or `abandon` it, once."""

    def __init__(self, throttle: SignInThrottle, source: str, key: tuple[str, str], trusted: bool,
                 pair: _Pair):
        self.throttle = throttle
        self.source = source
        self.key = key
        self.trusted = trusted
        self.pair = pair
        self._done = False

    async def check(self, secret: str, stored_hash: str | None, *, allowed: bool = True) -> bool:
        """Hash `secret` against `stored_hash` (a dummy when None, at the same cost) once a hash
        slot is free; True only if it matches and `allowed` (the account is usable). Records
        the outcome. Raises TooManyAttempts if no slot came free in time."""
        if self._done:
            raise RuntimeError("a sign-in attempt is checked once")
        self._done = True
        throttle = self.throttle
        try:
            await throttle._acquire(self)
        except BaseException:
            throttle._abandoned(self)
            raise
        try:
            matches = await throttle._hasher(secret, stored_hash or NO_USER_HASH)
        except BaseException:
            throttle._abandoned(self)
            raise
        finally:
            throttle._release()
        ok = bool(matches) and stored_hash is not None and allowed
        if ok:
            throttle._succeeded(self)
        else:
            throttle._failed(self)
        return ok

    def abandon(self) -> None:
        """The check could not be made (the store failed): counted neither way."""
        if not self._done:
            self._done = True
            self.throttle._abandoned(self)


def _thread_hasher(clock):
    if IReactorThreads.providedBy(clock):
        def in_thread(secret, stored):
            return deferToThreadPool(clock, clock.getThreadPool(), verify_secret, secret, stored)
        return in_thread

    def inline(secret, stored):
        return succeed(verify_secret(secret, stored))
    return inline
