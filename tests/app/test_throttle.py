"""The sign-in throttle (pcnet.app.throttle), on a task.Clock with a hasher whose hashes the
test finishes by hand: per-address and per-(address, username) failure budgets, no lock-out a
stranger can cause, a global hash budget (concurrency and rate) shared fairly across addresses,
and bounded memory."""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred

from pcnet.app.throttle import NO_USER_HASH, SignInPolicy, SignInThrottle, TooManyAttempts
from pcnet.domain.secrets import hash_secret

from tests.net._support import failure_of, result_of

GOOD = "scrypt$good"    # what the fake hasher accepts for the password "right"


class Hasher:
    """Hashes that finish when the test says so (`finish_all`) or at once (`instant`)."""

    def __init__(self, instant=True):
        self.instant = instant
        self.calls: list[tuple[str, str]] = []
        self.running: list[tuple[Deferred, bool]] = []

    def __call__(self, secret, stored):
        self.calls.append((secret, stored))
        matches = secret == "right" and stored == GOOD
        if self.instant:
            d = Deferred()
            d.callback(matches)
            return d
        d = Deferred()
        self.running.append((d, matches))
        return d

    def finish_all(self):
        running, self.running = self.running, []
        for d, matches in running:
            d.callback(matches)


def throttle(clock=None, hasher=None, **policy):
    clock = clock or task.Clock()
    return SignInThrottle(clock, SignInPolicy(**policy), hasher=hasher or Hasher())


def sign_in(t, source, username, password="wrong", stored=GOOD, allowed=True):
    """Deferred of the outcome (True/False), or raises TooManyAttempts from begin()."""
    attempt = t.begin(source, username)
    return ensureDeferred(attempt.check(password, stored, allowed=allowed))


def served_order(hasher, named: dict) -> list[str]:
    """Finish hashes one round at a time; the names of the sign-ins in the order they ended."""
    order = []
    for name, d in named.items():
        d.addCallback(lambda outcome, name=name: (order.append(name), outcome)[1])
    for _ in range(len(named)):
        hasher.finish_all()
    return order


def test_failing_on_purpose_from_elsewhere_does_not_lock_the_user_out():
    """Only the (address, username) pair is locked: the stranger's address, not the user."""
    t = throttle()
    for _ in range(5):
        assert result_of(sign_in(t, "203.0.113.9", "ann")) is False
    with pytest.raises(TooManyAttempts) as locked:
        t.begin("203.0.113.9", "ann")
    assert locked.value.retry_after == 300
    assert result_of(sign_in(t, "10.1.1.1", "ann", "right")) is True   # ann, from her desk
    with pytest.raises(TooManyAttempts):
        t.begin("203.0.113.9", "ANN")   # usernames are compared case-blind


def test_the_pair_lock_ends_after_the_lockout_and_old_failures_expire():
    clock = task.Clock()
    t = throttle(clock)
    for _ in range(4):
        result_of(sign_in(t, "a", "ann"))
    clock.advance(900)   # outside the window: those four no longer count
    for _ in range(4):
        result_of(sign_in(t, "a", "ann"))
    assert result_of(sign_in(t, "a", "ann", "right")) is True
    for _ in range(5):
        result_of(sign_in(t, "a", "ann"))
    clock.advance(299)
    with pytest.raises(TooManyAttempts) as locked:
        t.begin("a", "ann")
    assert locked.value.retry_after == 1
    clock.advance(1)
    assert result_of(sign_in(t, "a", "ann", "right")) is True


def test_parallel_guesses_for_one_pair_count_while_they_are_checked():
    hasher = Hasher(instant=False)
    t = throttle(hasher=hasher, concurrent_hashes=10)
    pending = [sign_in(t, "a", "ann") for _ in range(5)]
    with pytest.raises(TooManyAttempts):
        t.begin("a", "ann")
    hasher.finish_all()
    assert [result_of(d) for d in pending] == [False] * 5
    with pytest.raises(TooManyAttempts):
        t.begin("a", "ann")


def test_an_address_failing_under_ever_new_names_runs_out_of_budget():
    """Unknown usernames under ever-new names from one address: 50 failures, then 429 at
    once (no hash) until the budget refills (50 per 15 minutes)."""
    clock = task.Clock()
    hasher = Hasher()
    t = throttle(clock, hasher, hashes_per_second=1000)
    for i in range(50):
        assert result_of(sign_in(t, "198.51.100.7", f"user{i}", stored=None)) is False
    assert hasher.calls[-1] == ("wrong", NO_USER_HASH)   # unknown: hashed like a known one
    with pytest.raises(TooManyAttempts) as refused:
        t.begin("198.51.100.7", "user-new")
    assert refused.value.retry_after == 18               # one failure's worth refills in 18 s
    assert len(hasher.calls) == 50
    assert result_of(sign_in(t, "198.51.100.8", "user-new", stored=None)) is False   # others fine
    clock.advance(18)
    assert result_of(sign_in(t, "198.51.100.7", "user-new", stored=None)) is False


def test_a_user_who_signed_in_from_an_address_keeps_getting_in_when_it_is_abused():
    """Behind one NAT, a neighbour burns the address's failure budget: users who signed in from
    there before are not locked out by it."""
    t = throttle(address_failures=3)
    assert result_of(sign_in(t, "192.0.2.1", "ann", "right")) is True
    for i in range(3):
        result_of(sign_in(t, "192.0.2.1", f"x{i}"))
    with pytest.raises(TooManyAttempts):
        t.begin("192.0.2.1", "bob")                      # a newcomer from there waits
    assert result_of(sign_in(t, "192.0.2.1", "ann", "right")) is True


def test_unknown_and_disabled_users_cost_a_hash_and_fail_like_a_wrong_password():
    hasher = Hasher()
    t = throttle(hasher=hasher)
    assert result_of(sign_in(t, "a", "ghost", "right", stored=None)) is False
    assert result_of(sign_in(t, "a", "bob", "right", allowed=False)) is False
    assert hasher.calls == [("right", NO_USER_HASH), ("right", GOOD)]


def test_no_more_than_the_concurrent_hashes_run_at_once():
    hasher = Hasher(instant=False)
    t = throttle(hasher=hasher, concurrent_hashes=2, hashes_per_second=1000)
    outcomes = [sign_in(t, f"10.0.0.{i}", "ann") for i in range(6)]
    assert len(hasher.running) == 2 and t.waiting == 4
    hasher.finish_all()
    assert len(hasher.running) == 2 and t.waiting == 2
    hasher.finish_all()
    hasher.finish_all()
    assert all(result_of(d) is False for d in outcomes) and t.hashing == 0


def test_hashes_per_second_is_a_global_budget():
    clock = task.Clock()
    hasher = Hasher()
    t = throttle(clock, hasher, hashes_per_second=5, concurrent_hashes=100)
    outcomes = [sign_in(t, f"10.0.{i}.1", f"u{i}") for i in range(12)]
    assert len(hasher.calls) == 5                        # the burst: one second's worth
    clock.advance(1)
    assert len(hasher.calls) == 10
    clock.advance(0.5)
    assert len(hasher.calls) == 12
    assert all(d.called for d in outcomes)


def test_waiting_sign_ins_are_served_round_robin_across_addresses():
    """One address with a queue of guesses does not go ahead of everyone else's."""
    hasher = Hasher(instant=False)
    t = throttle(hasher=hasher, concurrent_hashes=1, hashes_per_second=1000)
    first = sign_in(t, "attacker", "u0")                 # hashing now
    attacker = [sign_in(t, "attacker", f"u{i}") for i in range(1, 5)]
    user = sign_in(t, "10.1.1.1", "ann", "right")
    order = served_order(hasher, {"a0": first, "ann": user,
                                  **{f"a{i}": d for i, d in enumerate(attacker, 1)}})
    assert order[:3] == ["a0", "a1", "ann"]


def test_a_trusted_pair_goes_ahead_of_strangers_in_the_queue():
    hasher = Hasher(instant=False)
    t = throttle(hasher=hasher, concurrent_hashes=1, hashes_per_second=1000)
    done = sign_in(t, "10.1.1.1", "ann", "right")
    hasher.finish_all()
    assert result_of(done) is True
    busy = sign_in(t, "s0", "x")
    strangers = [sign_in(t, f"s{i}", "x") for i in range(1, 4)]
    ann = sign_in(t, "10.1.1.1", "ann", "right")
    order = served_order(hasher, {"s0": busy, "ann": ann,
                                  **{f"s{i}": d for i, d in enumerate(strangers, 1)}})
    assert order[:2] == ["s0", "ann"]


def test_the_queues_are_bounded_per_address_and_in_all_and_waits_time_out():
    clock = task.Clock()
    hasher = Hasher(instant=False)
    t = throttle(clock, hasher, concurrent_hashes=1, waiting_per_address=2, max_waiting=5,
                 max_wait=10, hashes_per_second=1000)
    sign_in(t, "a", "u0")                                # hashing
    waiting = [sign_in(t, "a", "u1"), sign_in(t, "a", "u2")]
    with pytest.raises(TooManyAttempts):
        result_of(sign_in(t, "a", "u3"))                 # the address's queue is full
    waiting += [sign_in(t, "b", "u"), sign_in(t, "c", "u"), sign_in(t, "d", "u")]
    with pytest.raises(TooManyAttempts):
        result_of(sign_in(t, "e", "u"))                  # everyone's queue is full
    assert t.waiting == 5
    clock.advance(10)                                    # nobody was served in time
    for d in waiting:
        assert failure_of(d, TooManyAttempts).value.retry_after == 1
    assert t.waiting == 0 and t.tracked()["queued_addresses"] == 0
    hasher.finish_all()
    assert t.hashing == 0
    # the give-ups were not counted as failures: only the one hashed (u0) is remembered
    assert t.tracked()["pairs"] == 1


def test_memory_stays_bounded_under_ever_new_names_and_addresses():
    t = throttle(max_tracked=1000, address_failures=1, hashes_per_second=1e9)
    for i in range(20_000):
        result_of(sign_in(t, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", f"name{i}"))
    tracked = t.tracked()
    assert tracked["addresses"] <= 1000 and tracked["pairs"] <= 1000
    assert t.waiting == 0


def test_an_abandoned_sign_in_counts_neither_way():
    t = throttle(user_failures=2)
    t.begin("a", "ann").abandon()
    t.begin("a", "ann").abandon()
    t.begin("a", "ann").abandon()
    assert t.tracked()["pairs"] == 0
    assert result_of(sign_in(t, "a", "ann", "right")) is True


def test_the_default_hasher_checks_real_scrypt_hashes():
    """Without a hasher or a reactor with threads, hashes run inline with verify_secret."""
    t = SignInThrottle(task.Clock())
    stored = hash_secret("right")
    assert result_of(ensureDeferred(t.begin("a", "ann").check("right", stored))) is True
    assert result_of(ensureDeferred(t.begin("a", "ann").check("wrong", stored))) is False
    assert result_of(ensureDeferred(t.begin("a", "zed").check("right", None))) is False


def test_policy_values_are_checked():
    for bad in (dict(hashes_per_second=0), dict(concurrent_hashes=0), dict(max_tracked=0),
                dict(user_failures=0), dict(max_wait=0)):
        with pytest.raises(ValueError):
            SignInPolicy(**bad)


def test_a_full_queue_is_refused_at_begin_before_the_caller_looks_the_user_up():
    """Once strangers fill the wait queue, more of them are refused by begin() itself (no
    database lookup, no hash); a user who signed in from their address before still queues."""
    hasher = Hasher(instant=False)
    t = throttle(hasher=hasher, concurrent_hashes=1, max_waiting=3, hashes_per_second=1000)
    ann = sign_in(t, "10.1.1.1", "ann", "right")
    hasher.finish_all()
    assert result_of(ann) is True
    busy = [sign_in(t, f"s{i}", "x") for i in range(4)]   # one hashing, three waiting
    with pytest.raises(TooManyAttempts) as refused:
        t.begin("s9", "x")
    assert refused.value.retry_after >= 1
    again = sign_in(t, "10.1.1.1", "ann", "right")
    order = served_order(hasher, {"s0": busy[0], "ann": again,
                                  **{f"s{i}": d for i, d in enumerate(busy[1:], 1)}})
    assert order[:2] == ["s0", "ann"] and result_of(again) is True
