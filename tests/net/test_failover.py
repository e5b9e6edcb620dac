"""A node's list of servers (pcnet.net.failover.ServerList): the first server that approves
gets the session; a lost session starts again from the top; away from the first server it
goes back when that one answers again; a rejected node says so in one line and waits long;
nothing is ever logged as a traceback (ClientService's NoTransition, which this replaces)."""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.logger import globalLogPublisher

from pcnet.net.failover import Server, ServerList
from tests.fakes import FakeServer, HelloFactory


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def make(*endpoints, **kw):
    clock = task.Clock()
    got = []
    servers = [Server(e.name, e) for e in endpoints]
    service = ServerList(servers, HelloFactory(), clock=clock,
                         on_session=lambda session, server: got.append(server.name), **kw)
    return service, clock, got


def no_tracebacks(events):
    assert not [e for e in events if "log_failure" in e or (e.get("log_level") and e["log_level"].name == "critical")]


def test_the_first_server_that_answers_gets_the_session_and_a_lost_one_starts_from_the_top(logged):
    a, b = FakeServer("a", "down"), FakeServer("b")
    service, clock, got = make(a, b, failback_interval=0)
    service.startService()
    assert got == ["b"] and service.current == 1
    a.state = "up"
    b.sessions[0].lose()          # b was killed: a is asked first again, at once
    assert got == ["b", "a"] and service.current == 0
    service.stopService()
    no_tracebacks(logged)


def test_away_from_the_first_server_it_goes_back_when_that_one_answers_again(logged):
    a, b = FakeServer("a", "down"), FakeServer("b")
    service, clock, got = make(a, b, failback_interval=10)
    service.startService()
    assert got == ["b"]
    clock.advance(10)             # a is still down: stay on b
    assert got == ["b"] and b.sessions[0].is_connected
    a.state = "up"
    clock.advance(10)
    assert got == ["b", "a"] and service.current == 0
    clock.advance(1)              # the old session is closed once nothing is in flight on it
    assert not b.sessions[0].is_connected and a.sessions[0].is_connected
    service.stopService()
    no_tracebacks(logged)


def test_a_replaced_session_keeps_its_requests_in_flight_until_they_are_answered():
    a, b = FakeServer("a", "down"), FakeServer("b")
    service, clock, got = make(a, b, failback_interval=5)
    service.startService()
    old = b.sessions[0]
    old.in_flight = 2
    a.state = "up"
    clock.advance(5)
    assert got == ["b", "a"]
    clock.advance(3)
    assert old.is_connected       # still answering what was asked on it
    old.in_flight = 0
    clock.advance(0.2)
    assert not old.is_connected
    service.stopService()


def test_when_every_server_fails_it_backs_off_and_tries_again(logged):
    a, b = FakeServer("a", "down"), FakeServer("b", "down")
    service, clock, got = make(a, b, initial_delay=1, max_delay=4)
    service.startService()
    assert got == []
    for delay in (1, 2, 4, 4):
        clock.advance(delay)
    assert got == []
    b.state = "up"
    clock.advance(4)
    assert got == ["b"]
    # One line per server and reason, not one per attempt.
    notes = [e for e in logged if e.get("log_format", "").startswith("server {server}")]
    assert len(notes) == 2
    service.stopService()
    no_tracebacks(logged)


def test_a_rejected_node_logs_one_clear_line_per_round_and_waits_the_rejected_delay(logged):
    a, b = FakeServer("a", "rejected"), FakeServer("b", "rejected")
    service, clock, got = make(a, b, rejected_delay=300, max_delay=5)
    service.startService()
    rounds = [e for e in logged if "every server rejected" in e.get("log_format", "")]
    assert len(rounds) == 1
    clock.advance(299)
    assert len([e for e in logged if "every server rejected" in e.get("log_format", "")]) == 1
    a.state = "up"                # an administrator approved it meanwhile
    clock.advance(1)
    assert got == ["a"]
    service.stopService()
    no_tracebacks(logged)


def test_one_rejecting_server_does_not_stop_the_next_one_from_being_asked():
    a, b = FakeServer("a", "rejected"), FakeServer("b")
    service, clock, got = make(a, b, failback_interval=0)
    service.startService()
    assert got == ["b"]
    service.stopService()


def test_stopping_closes_the_session_and_cancels_the_wait():
    a = FakeServer("a", "down")
    service, clock, got = make(a)
    service.startService()
    service.stopService()
    a.state = "up"
    clock.advance(60)
    assert got == []
    b = FakeServer("b")
    service, clock, got = make(b)
    service.startService()
    service.stopService()
    assert not b.sessions[0].is_connected
