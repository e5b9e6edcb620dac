"""The pcnet/1 line protocol: hello, dispatch, errors, limits, heartbeats, both ends.

Server-side rules are pinned with the server protocol on a StringTransport (raw lines in, parsed
replies out); two-ended behaviour with a client and a server connected by iosim. Time is a
task.Clock throughout.
"""

import json

import pytest
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from pcnet.errors import InsufficientFunds, PcnetError
from pcnet.interfaces import ILineSession
from pcnet.net.line import (
    LineConfig,
    LinkDown,
    Operations,
    RemoteError,
)
from pcnet.net.registry import MemoryNodeRegistry, NodeStatus

from ._support import (
    CREDENTIAL,
    NODE_ADDR,
    ServerHarness,
    failure_of,
    line_pair,
    one_turn,
    result_of,
)

# --- hello ---------------------------------------------------------------------------------------


def test_approved_hello_authenticates_the_session():
    h = ServerHarness()
    reply = h.hello()
    assert reply == {
        "re": 1,
        "ok": True,
        "version": 1,
        "server": "app1",
        "heartbeat_interval": 5.0,
        "missed_beats": 3,
        "max_line_length": 1 << 20,
    }
    session = h.protocol
    assert (session.authenticated, session.role, session.node) == (True, "provider", "print01")
    assert session.peer == NODE_ADDR
    assert h.factory.sessions == {("provider", "print01"): session}
    verifyObject(ILineSession, session)


def test_unknown_node_without_a_code_is_rejected_closed_and_not_recorded():
    registry = MemoryNodeRegistry()
    h = ServerHarness(registry=registry)
    reply = h.hello(node="new01", id="h1")
    assert reply["re"] == "h1" and reply["error"]["code"] == "rejected"
    assert "enrolment code" in reply["error"]["message"]
    assert h.transport.disconnecting and registry.nodes() == []


def test_an_invited_node_enrols_with_the_code_in_its_hello():
    registry = MemoryNodeRegistry()
    code = registry.invite("provider", "new01")
    h = ServerHarness(registry=registry)
    assert h.hello(node="new01", enrolment_code=code)["ok"] is True
    assert h.protocol.node == "new01"
    assert registry.status("provider", "new01") is NodeStatus.APPROVED


def test_a_pending_node_stays_connected_and_may_retry():
    registry = MemoryNodeRegistry()
    code = registry.invite("site", "s1")  # a Site Server waits for approval after enrolling
    h = ServerHarness(registry=registry)
    reply = h.hello(role="site", node="s1", id="h1", enrolment_code=code)
    assert reply["re"] == "h1" and reply["error"]["code"] == "pending"
    assert not h.transport.disconnecting and not h.protocol.authenticated
    registry.approve("site", "s1")
    assert h.hello(role="site", node="s1", id="h2")["ok"] is True


@pytest.mark.parametrize("code", ["", 5, None, ["x"], "x" * 129, "caf\u00e9", "a b\n", "\ud800"])
def test_a_malformed_enrolment_code_is_refused_before_the_registry_sees_it(code):
    h = ServerHarness()
    if code is None:  # a null code is the same as none
        assert h.hello(enrolment_code=code)["ok"] is True
        return
    reply = h.hello(enrolment_code=code)
    assert reply["error"]["code"] == "invalid" and "enrolment_code" in reply["error"]["message"]
    assert h.transport.disconnecting


def test_wrong_credential_is_rejected_and_closed():
    h = ServerHarness()
    reply = h.hello(credential="guess")
    assert reply["error"]["code"] == "rejected"
    assert h.transport.disconnecting
    assert not h.protocol.authenticated and h.factory.sessions == {}


def test_rejected_node_is_closed():
    registry = MemoryNodeRegistry()
    registry.add("site", "s1", CREDENTIAL, NodeStatus.REJECTED)
    h = ServerHarness(registry=registry)
    assert h.hello(role="site", node="s1")["error"]["code"] == "rejected"
    assert h.transport.disconnecting


def test_the_credential_and_enrolment_code_never_appear_in_the_logs():
    h = ServerHarness()
    registry = MemoryNodeRegistry()
    code = registry.invite("site", "s1")
    with capturedLogs() as events:
        h.hello(credential="hunter2-guess")
        ServerHarness(registry=MemoryNodeRegistry()).hello(credential="hunter2-unknown",
                                                           enrolment_code="hunter2-code")
        ServerHarness(registry=registry).hello(role="site", node="s1", credential="hunter2-site",
                                               enrolment_code=code)
    text = repr(events)
    assert "hunter2" not in text and code not in text


@pytest.mark.parametrize("version", [2, 0, 7_000_000])
def test_other_protocol_versions_are_refused_and_closed(version):
    h = ServerHarness()
    h.send({"op": "hello", "id": 1, "version": version, "role": "provider", "node": "print01",
            "credential": CREDENTIAL})
    (reply,) = h.replies()
    assert reply["error"]["code"] == "unsupported_version"
    assert h.transport.disconnecting


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "printer"},
        {"role": ["provider"]},
        {"role": None},
        {"node": ""},
        {"node": 5},
        {"node": "bad\nname"},
        {"node": "nul\x00byte"},
        {"node": "lone \ud800 surrogate"},
        {"node": "n" * 256},
        {"credential": None},
        {"credential": ""},
        {"credential": 12345},
        {"credential": "lone \udfff surrogate"},
        {"credential": "nul\x00byte"},
        {"credential": "c" * 1025},
        {"credential": {"nested": "object"}},
        {"version": "1"},
        {"version": None},
        {"version": 1.0},
        {"version": True},
        {"version": 2 ** 64},
        {"version": -(2 ** 70)},
    ],
    ids=repr,
)
def test_invalid_hello_fields_are_refused_as_invalid_and_closed(fields):
    """Every malformed hello field is `invalid` (never `internal`, never a logged traceback):
    wrong types, lone surrogates and NUL bytes (which fail only when hashed or stored), huge
    integers, over-long text."""
    h = ServerHarness(registry=MemoryNodeRegistry())
    hello = {"op": "hello", "id": 1, "version": 1, "role": "provider", "node": "print01",
             "credential": CREDENTIAL}
    hello.update(fields)
    with capturedLogs() as events:
        h.send(json.dumps(hello).encode() + b"\n")
    (reply,) = h.replies()
    assert reply["error"]["code"] == "invalid", reply
    assert h.transport.disconnecting
    assert not [e for e in events if e.get("log_failure")]
    assert h.registry.nodes() == []


def test_before_hello_only_hello_and_ping_are_answered():
    h = ServerHarness()
    h.send(b'{"op":"ping","id":1}\n{"op":"job.decide","id":2}\n{"op":"nonsense","id":3}\n')
    assert h.replies() == [
        {"re": 1, "ok": True},
        {"re": 2, "ok": False, "error": {"code": "not_authenticated", "message": "say hello first"}},
        {"re": 3, "ok": False, "error": {"code": "not_authenticated", "message": "say hello first"}},
    ]
    assert not h.transport.disconnecting


def test_second_hello_is_a_conflict():
    h = ServerHarness()
    h.hello()
    assert h.hello(id=2)["error"]["code"] == "conflict"
    assert h.protocol.authenticated and not h.transport.disconnecting


def test_hello_while_the_registry_is_still_deciding_is_a_conflict():
    slow = Deferred()

    class SlowRegistry:
        def check(self, role, node, credential, peer):
            return slow

    h = ServerHarness(registry=SlowRegistry())
    h.send({"op": "hello", "id": 1, "version": 1, "role": "provider", "node": "a",
            "credential": "c"})
    assert h.replies() == []
    assert h.hello(node="a", credential="c", id=2)["error"]["code"] == "conflict"
    slow.callback("approved")  # a plain string is accepted as a status
    assert h.replies()[0]["re"] == 1 and h.protocol.authenticated


def test_registry_failure_is_an_internal_error_and_the_node_may_retry():
    class BrokenRegistry:
        def check(self, role, node, credential, peer):
            raise RuntimeError("database on fire")

    h = ServerHarness(registry=BrokenRegistry())
    with capturedLogs() as events:
        reply = h.hello()
    assert reply["error"]["code"] == "internal"
    assert "fire" not in reply["error"]["message"]
    assert any(e.get("log_failure") for e in events)
    assert not h.transport.disconnecting


def test_the_hello_deadline_is_short_by_default():
    """A stranger that never says hello is gone 10 s after its TLS handshake (the old default
    was 120 s)."""
    h = ServerHarness(registry=MemoryNodeRegistry())
    h.send(b'{"op":"ping","id":"p"}\n')
    h.clock.advance(9.9)
    assert not h.transport.disconnecting
    h.clock.advance(0.1)
    assert h.transport.disconnecting
    assert [r["error"]["code"] for r in h.replies() if r.get("ok") is False] == ["auth_timeout"]


def test_unauthenticated_connection_is_closed_after_auth_timeout():
    registry = MemoryNodeRegistry()
    registry.add("provider", "new", CREDENTIAL, NodeStatus.PENDING)
    h = ServerHarness(registry=registry, config=LineConfig(auth_timeout=60))
    h.hello(node="new")  # pending
    for _ in range(14):  # the node keeps the link alive (heartbeats) but is never approved
        h.clock.advance(4)
        h.send(b'{"op":"ping","id":"p"}\n')
    h.clock.advance(3)
    h.replies()
    assert not h.transport.disconnecting
    h.clock.advance(1)
    (line,) = [r for r in h.replies() if "re" in r]
    assert line["re"] is None and line["error"]["code"] == "auth_timeout"
    assert h.transport.disconnecting


def test_lines_before_hello_are_short():
    """Until a hello is approved a line may be 4 KiB, not max_line_length: a partial line one
    byte over is refused and the connection closed, without buffering the rest."""
    h = ServerHarness()
    h.send(b"{" + b" " * 4095)
    assert not h.transport.disconnecting
    h.send(b" ")
    (reply,) = h.replies()
    assert reply["error"]["code"] == "line_too_long" and "4096" in reply["error"]["message"]
    assert h.transport.disconnecting
    assert h.protocol._partial == []


def test_a_whole_line_before_hello_over_the_hello_limit_is_refused():
    h = ServerHarness()
    h.send(b'{"op":"ping","id":"' + b"x" * 5000 + b'"}\n')
    assert h.replies()[0]["error"]["code"] == "line_too_long"
    assert h.transport.disconnecting


def test_after_hello_the_full_line_length_applies():
    ops = Operations()
    ops.register("echo", lambda session, message: {"n": len(message["blob"])})
    h = ServerHarness(ops=ops)
    assert h.hello()["ok"]
    h.send({"op": "echo", "id": 2, "blob": "x" * 100_000})
    assert h.replies() == [{"re": 2, "ok": True, "n": 100_000}]


def test_hello_line_length_is_configurable():
    h = ServerHarness(config=LineConfig(hello_line_length=1024))
    h.send(b"{" + b" " * 1024)
    assert h.replies()[0]["error"]["code"] == "line_too_long"


def test_only_a_few_messages_are_accepted_before_hello():
    """A stranger cannot keep a connection busy (or make the server queue replies it never
    reads) with endless pings before its hello: message 65 closes the connection."""
    h = ServerHarness()
    h.send(b'{"op":"ping","id":1}\n' * 64)
    assert len(h.replies()) == 64 and not h.transport.disconnecting
    h.send(b'{"op":"ping","id":1}\n' * 1000)
    (reply,) = h.replies()
    assert reply["re"] is None and reply["error"]["code"] == "not_authenticated"
    assert h.transport.disconnecting


def test_the_message_budget_ends_with_an_approved_hello():
    h = ServerHarness()
    h.send(b'{"op":"ping","id":1}\n' * 60)
    h.replies()
    assert h.hello(id=2)["ok"]
    h.send(b'{"op":"ping","id":1}\n' * 500)
    assert len(h.replies()) == 500 and not h.transport.disconnecting


def test_connections_expiring_together_are_closed_a_few_per_reactor_turn():
    """Thousands of strangers opened together expire together; their closes take turns with
    the reactor's other work (StrangerWork) instead of running in one go."""
    from itertools import count

    from twisted.internet.testing import StringTransport

    from pcnet.net.limits import StrangerWork

    h = ServerHarness(registry=MemoryNodeRegistry())
    ticks = count()
    h.factory.stranger_work = StrangerWork(h.clock, budget=0.5, timer=lambda: next(ticks))
    transports = [h.transport]
    for _ in range(3):
        p = h.factory.buildProtocol(NODE_ADDR)
        transports.append(StringTransport(peerAddress=NODE_ADDR))
        p.makeConnection(transports[-1])
    one_turn(h.clock, 10)   # the timers fire; the work queue gets its first turn after them
    one_turn(h.clock)
    assert [t.disconnecting for t in transports] == [True, False, False, False]
    h.clock.advance(0)      # the following turns
    assert all(t.disconnecting for t in transports)


def test_the_server_sends_no_heartbeats_before_an_approved_hello():
    """Pinging strangers costs a TLS record each; the hello deadline ends them sooner than a
    missed beat would. Heartbeats start with the approved session."""
    h = ServerHarness(config=LineConfig(heartbeat_interval=1, auth_timeout=60))
    h.clock.advance(5)
    assert h.replies() == []
    assert h.hello()["ok"]
    h.clock.advance(1)
    assert [r.get("op") for r in h.replies()] == ["ping"]


def test_strangers_are_logged_at_most_once_a_minute_per_kind():
    """Hundreds of connections timing out before hello make one log line (and a count)."""
    from twisted.internet.testing import StringTransport

    first = ServerHarness(registry=MemoryNodeRegistry())
    factory, clock = first.factory, first.clock
    with capturedLogs() as events:
        for _ in range(299):
            p = factory.buildProtocol(NODE_ADDR)
            p.makeConnection(StringTransport(peerAddress=NODE_ADDR))
        clock.advance(10)
    lines = [e for e in events if "not approved" in e.get("log_format", "")]
    assert len(lines) == 1
    assert factory.stranger_log.suppressed("auth_timeout") == 299
    with capturedLogs() as events:
        clock.advance(60)
        p = factory.buildProtocol(NODE_ADDR)
        p.makeConnection(StringTransport(peerAddress=NODE_ADDR))
        clock.advance(10)
    (line,) = [e for e in events if "not approved" in e.get("log_format", "")]
    assert line["left_out"] == 299


def test_approved_connection_is_not_subject_to_auth_timeout():
    h = ServerHarness(config=LineConfig(auth_timeout=60))
    h.hello()
    for _ in range(20):
        h.clock.advance(4)
        h.send(b'{"op":"ping","id":"k"}\n')
    assert not h.transport.disconnecting


# --- dispatch -----------------------------------------------------------------------------------


def authenticated(ops, **kw) -> ServerHarness:
    h = ServerHarness(ops=ops, **kw)
    assert h.hello()["ok"]
    return h


def test_many_requests_in_flight_are_answered_out_of_order():
    waiting: dict = {}
    ops = Operations()

    @ops.op("job.decide")
    def decide(session, message):
        d = waiting[message["id"]] = Deferred()
        return d

    h = authenticated(ops)
    h.send(b"".join(b'{"op":"job.decide","id":%d,"job":%d}\n' % (i, i) for i in range(100)))
    assert h.replies() == []
    for i in reversed(range(100)):
        waiting[i].callback({"action": "print", "job": i})
    replies = h.replies()
    assert [r["re"] for r in replies] == list(reversed(range(100)))
    assert all(r == {"re": r["job"], "ok": True, "action": "print", "job": r["job"]}
               for r in replies)


def test_handlers_may_be_plain_deferred_or_coroutine_and_return_nothing():
    ops = Operations()
    ops.register("plain", lambda session, message: {"n": message["n"] + 1})
    ops.register("nothing", lambda session, message: None)
    ops.register("deferred", lambda session, message: defer.succeed({"d": True}))

    @ops.op("coro")
    async def coro(session, message):
        await defer.succeed(None)
        return {"who": [session.role, session.node]}

    h = authenticated(ops)
    h.send(b'{"op":"plain","id":1,"n":1}\n{"op":"nothing","id":2}\n'
           b'{"op":"deferred","id":3}\n{"op":"coro","id":"x"}\n')
    assert h.replies() == [
        {"re": 1, "ok": True, "n": 2},
        {"re": 2, "ok": True},
        {"re": 3, "ok": True, "d": True},
        {"re": "x", "ok": True, "who": ["provider", "print01"]},
    ]


def test_unknown_fields_are_ignored():
    ops = Operations()
    ops.register("echo", lambda session, message: {"n": message["n"]})
    h = authenticated(ops)
    h.send({"op": "echo", "id": 1, "n": 3, "future_field": {"x": [1, 2]}, "trace": "abc"})
    assert h.replies() == [{"re": 1, "ok": True, "n": 3}]


def test_pcnet_errors_become_error_replies_with_their_code():
    ops = Operations()

    @ops.op("charge")
    def charge(session, message):
        raise InsufficientFunds("alice's balance is 0.10, the job costs 0.50")

    @ops.op("later")
    async def later(session, message):
        raise PcnetError("custom", code="printer_offline")

    h = authenticated(ops)
    h.send(b'{"op":"charge","id":1}\n{"op":"later","id":2}\n')
    assert h.replies() == [
        {"re": 1, "ok": False, "error": {"code": "insufficient_funds",
                                         "message": "alice's balance is 0.10, the job costs 0.50"}},
        {"re": 2, "ok": False, "error": {"code": "printer_offline", "message": "custom"}},
    ]
    assert not h.transport.disconnecting


@pytest.mark.parametrize("how", ["raise", "errback", "coroutine"])
def test_handler_bugs_are_logged_answered_internal_and_do_not_hurt_other_requests(how):
    ops = Operations()
    slow = Deferred()
    ops.register("slow", lambda session, message: slow)

    @ops.op("buggy")
    def buggy(session, message):
        if how == "raise":
            raise KeyError("oops")
        if how == "errback":
            return defer.fail(ZeroDivisionError())

        async def run():
            return {}["missing"]

        return run()

    h = authenticated(ops)
    with capturedLogs() as events:
        h.send(b'{"op":"slow","id":1}\n{"op":"buggy","id":2}\n{"op":"ping","id":3}\n')
    assert h.replies() == [
        {"re": 2, "ok": False,
         "error": {"code": "internal", "message": "internal error (logged on the answering side)"}},
        {"re": 3, "ok": True},
    ]
    failures = [e for e in events if e.get("log_failure")]
    assert len(failures) == 1 and failures[0]["op"] == "buggy"
    slow.callback({"done": 1})
    assert h.replies() == [{"re": 1, "ok": True, "done": 1}]


@pytest.mark.parametrize(
    "result",
    [["not", "a", "dict"], {"x": object()}, {"x": float("nan")}, {"re": 5}, {"ok": False}],
)
def test_results_that_cannot_be_sent_are_internal_errors(result):
    ops = Operations()
    ops.register("bad", lambda session, message: result)
    h = authenticated(ops)
    with capturedLogs():
        h.send(b'{"op":"bad","id":1}\n')
    assert h.replies() == [{"re": 1, "ok": False, "error": {
        "code": "internal", "message": "internal error (logged on the answering side)"}}]


def test_too_many_requests_in_progress_get_busy_and_the_rest_go_on():
    waiting = []
    ops = Operations()
    ops.register("slow", lambda session, message: waiting.append(Deferred()) or waiting[-1])
    h = authenticated(ops, config=LineConfig(max_in_flight=3))
    h.send(b"".join(b'{"op":"slow","id":%d}\n' % i for i in range(4)))
    assert h.replies() == [{"re": 3, "ok": False, "error": {
        "code": "busy", "message": "more than 3 requests in progress; retry later"}}]
    waiting[0].callback({})
    h.send(b'{"op":"slow","id":4}\n')
    assert [r["re"] for r in h.replies()] == [0]
    for d in waiting[1:]:
        d.callback({})
    assert [r["re"] for r in h.replies()] == [1, 2, 4]


def test_unknown_op_gets_an_error_reply():
    h = authenticated(Operations())
    h.send(b'{"op":"job.explode","id":7}\n')
    assert h.replies() == [{"re": 7, "ok": False, "error": {
        "code": "unknown_op", "message": "unknown operation 'job.explode'"}}]


@pytest.mark.parametrize(
    "line, re",
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (b'"a string"', None),
        (b'{"op":"ping"}', None),  # no id
        (b'{"op":"ping","id":1.5}', None),
        (b'{"op":"ping","id":true}', None),
        (b'{"op":"ping","id":[1]}', None),
        (b'{"op":"ping","id":null}', None),
        (b'{"id":4}', 4),  # no op
        (b'{"id":"q","op":7}', "q"),
        (b'{"op":"ping","id":1} trailing', None),
        (b'{"op":"ping","id":1,"x":NaN}', None),
        (b'{"op":"ping","id":1,"x":Infinity}', None),
        (b'\xff\xfe{"op":"ping","id":1}', None),
        (b"[" * 100_000, None),
        (b'{"op":"ping","id":' + b"9" * 5000 + b"}", None),
    ],
)
def test_malformed_lines_get_an_error_and_the_connection_stays_up(line, re):
    h = authenticated(Operations())
    h.send(line + b"\n" + b'{"op":"ping","id":"after"}\n')
    bad, good = h.replies()
    assert bad["re"] == re and bad["ok"] is False and bad["error"]["code"] == "malformed"
    assert good == {"re": "after", "ok": True}
    assert not h.transport.disconnecting


def test_whitespace_around_a_message_is_tolerated():
    h = authenticated(Operations())
    h.send(b'  {"op":"ping","id":1}\r\n')
    assert h.replies() == [{"re": 1, "ok": True}]


def test_over_long_line_gets_an_error_and_the_connection_is_closed():
    h = authenticated(Operations(), config=LineConfig(max_line_length=1024))
    h.send(b'{"op":"ping","id":1}\n{"op":"ping","id":2,"pad":"' + b"x" * 1100)
    first, too_long = h.replies()
    assert first == {"re": 1, "ok": True}
    assert too_long["re"] is None and too_long["error"]["code"] == "line_too_long"
    assert h.transport.disconnecting


def test_non_ascii_text_round_trips():
    ops = Operations()
    ops.register("echo", lambda session, message: {"title": message["title"]})
    h = authenticated(ops)
    h.send('{"op":"echo","id":1,"title":"Prüfbericht ✓ 漢字"}\n'.encode())
    assert h.replies() == [{"re": 1, "ok": True, "title": "Prüfbericht ✓ 漢字"}]


def test_reply_to_a_request_whose_connection_is_gone_is_dropped():
    slow = Deferred()
    ops = Operations()
    ops.register("slow", lambda session, message: slow)
    h = authenticated(ops)
    h.send(b'{"op":"slow","id":1}\n')
    h.lose()
    slow.callback({"late": True})
    assert h.transport.value() == b""


def test_operations_registry_rules():
    ops = Operations()
    with pytest.raises(ValueError):
        ops.register("hello", lambda s, m: None)
    with pytest.raises(ValueError):
        ops.register("ping", lambda s, m: None)
    ops.register("a", lambda s, m: None)
    with pytest.raises(ValueError):
        ops.register("a", lambda s, m: None)
    assert "a" in ops and ops.names() == ["a"]


# --- heartbeats (server end alone) -------------------------------------------------------------


def pings(replies):
    return [r for r in replies if r.get("op") == "ping"]


def test_idle_side_pings_once_per_interval_after_its_last_send():
    h = authenticated(Operations())  # the hello reply went out at t=0
    h.clock.advance(4.9)
    assert pings(h.replies()) == []
    h.clock.advance(0.1)
    (ping,) = pings(h.replies())
    assert set(ping) == {"op", "id"}
    h.send({"re": ping["id"], "ok": True})  # pong
    h.clock.advance(3)
    h.send(b'{"op":"ping","id":"peer"}\n')  # our reply to this, at t=8, is a send too
    h.clock.advance(4.9)
    assert pings(h.replies()) == []
    h.clock.advance(0.1)  # t=13: five seconds after our last send
    assert len(pings(h.replies())) == 1


def test_a_busy_side_does_not_ping():
    h = authenticated(Operations())
    for _ in range(10):
        h.clock.advance(2.5)
        h.send(b'{"op":"ping","id":1}\n')  # the peer pings; our replies keep us busy
    assert pings(h.replies()) == []


def test_link_is_declared_down_after_the_detection_time_of_silence():
    config = LineConfig(heartbeat_interval=5, missed_beats=3)
    assert config.detection_time == 15
    h = authenticated(Operations(), config=config)
    pushed = h.protocol.request("job.release", job=1)
    h.clock.advance(7)
    h.send(b'{"op":"ping","id":1}\n')  # last sign of life at t=7
    for _ in range(4):
        h.clock.advance(3.5)  # t=21
    assert len(pings(h.replies())) == 3  # at t=5, 12 (5 s after our reply at 7) and 17
    assert not h.transport.disconnecting
    h.clock.advance(0.99)  # t=21.99
    assert not h.transport.disconnecting
    h.clock.advance(0.01)  # t=22: 15 s after the last byte
    assert h.transport.disconnecting
    h.lose()
    f = failure_of(pushed, LinkDown)
    assert "nothing received for 15.0 s" in f.value.message
    assert h.factory.sessions == {}


def test_detection_time_is_configurable():
    h = authenticated(Operations(), config=LineConfig(heartbeat_interval=1, missed_beats=2))
    assert h.protocol.config.detection_time == 2
    h.clock.advance(1.999)
    assert not h.transport.disconnecting
    h.clock.advance(0.001)
    assert h.transport.disconnecting


def test_any_partial_data_counts_as_a_sign_of_life():
    h = authenticated(Operations())
    for _ in range(10):
        h.clock.advance(10)
        h.send(b'{"op":"ping",')  # a slow, long line in progress
    assert not h.transport.disconnecting


def test_config_is_validated():
    for bad in [dict(heartbeat_interval=0), dict(missed_beats=1), dict(max_line_length=10),
                dict(auth_timeout=0), dict(max_in_flight=0), dict(hello_line_length=512),
                dict(max_lines_before_hello=1)]:
        with pytest.raises(ValueError):
            LineConfig(**bad)


# --- both ends ---------------------------------------------------------------------------------


def approved_pair(ops_server=None, ops_client=None, **kw):
    server_factory, client_factory, server, client, pump, clock = line_pair(
        ops_server, ops_client, **kw
    )
    d = client_factory.prepare(client)
    pump.flush()
    assert result_of(d) is client
    return server_factory, client_factory, server, client, pump, clock


def test_client_says_hello_and_learns_the_server():
    server_factory, _, server, client, _, _ = approved_pair()
    assert client.authenticated and (client.role, client.node) == ("server", "app1")
    assert client.server_info["heartbeat_interval"] == 5.0
    assert server_factory.sessions == {("provider", "print01"): server}
    verifyObject(ILineSession, client)


def test_client_requests_get_results_and_remote_errors():
    ops = Operations()
    ops.register("add", lambda session, message: {"sum": message["a"] + message["b"]})

    @ops.op("charge")
    def charge(session, message):
        raise InsufficientFunds("no money")

    _, _, _, client, pump, _ = approved_pair(ops)
    ok = client.request("add", a=2, b=3)
    bad = client.request("charge", amount="0.50")
    unknown = client.request("nope")
    pump.flush()
    assert result_of(ok) == {"sum": 5}
    err = failure_of(bad, RemoteError).value
    assert (err.code, err.message) == ("insufficient_funds", "no money")
    assert isinstance(err, PcnetError) and err.to_json() == {
        "code": "insufficient_funds", "message": "no money"}
    assert failure_of(unknown, RemoteError).value.code == "unknown_op"


def test_request_fields_cannot_override_id_or_op():
    _, _, _, client, _, _ = approved_pair()
    failure_of(client.request("x", id=5), TypeError)
    failure_of(client.request("x", op="y"), TypeError)


def test_the_server_can_push_requests_to_the_client():
    client_ops = Operations()
    released = []

    @client_ops.op("job.release")
    async def release(session, message):
        released.append((session.role, session.node, message["job"]))
        return {"released": True}

    _, _, server, _, pump, _ = approved_pair(ops_client=client_ops)
    d = server.request("job.release", job=42)
    pump.flush()
    assert result_of(d) == {"released": True}
    assert released == [("server", "app1", 42)]


def test_ids_are_per_side_so_both_may_use_the_same_numbers():
    ops = Operations()
    ops.register("who", lambda session, message: {"side": "server"})
    client_ops = Operations()
    client_ops.register("who", lambda session, message: {"side": "client"})
    _, _, server, client, pump, _ = approved_pair(ops, client_ops)
    a = [client.request("who") for _ in range(3)]
    b = [server.request("who") for _ in range(3)]
    pump.flush()
    assert [result_of(d)["side"] for d in a] == ["server"] * 3
    assert [result_of(d)["side"] for d in b] == ["client"] * 3


def test_pending_requests_fail_with_link_down_when_the_connection_is_lost():
    ops = Operations()
    ops.register("forever", lambda session, message: Deferred())
    _, _, server, client, pump, _ = approved_pair(ops)
    pending = [client.request("forever") for _ in range(5)]
    pump.flush()
    assert client.in_flight == 5
    server.transport.loseConnection()
    pump.flush()
    for d in pending:
        assert isinstance(failure_of(d, LinkDown).value, PcnetError)
    assert client.in_flight == 0
    assert not client.connected and not client.is_connected
    after = client.request("forever")
    failure_of(after, LinkDown)
    assert result_of(client.when_closed())


def test_a_request_can_time_out_and_its_late_reply_is_ignored():
    slow = Deferred()
    ops = Operations()
    ops.register("slow", lambda session, message: slow)
    _, _, _, client, pump, clock = approved_pair(ops)
    d = client.request("slow").addTimeout(2, clock)
    pump.flush()
    clock.advance(2)
    failure_of(d, TimeoutError)
    assert client.in_flight == 0
    slow.callback({"late": True})
    with capturedLogs() as events:
        pump.flush()
    assert client.is_connected
    assert not [e for e in events if e.get("log_level") and e["log_level"].name in ("error", "critical")]


def test_cancelling_a_request_forgets_it():
    _, _, _, client, pump, _ = approved_pair(Operations())
    d = client.request("anything")
    d.cancel()
    failure_of(d, CancelledError)
    assert client.in_flight == 0
    pump.flush()  # the unknown_op reply comes back and is ignored


def test_heartbeats_keep_an_idle_link_up_and_silence_brings_it_down():
    _, _, server, client, pump, clock = approved_pair()
    for _ in range(20):  # 100 s of idleness, pumping all the while
        clock.advance(5)
        pump.flush()
    assert client.is_connected and server.is_connected
    pushed = server.request("job.release", job=1)
    # The network goes silent: nothing is pumped any more.
    clock.advance(14.9)
    assert not client.transport.disconnecting and not server.transport.disconnecting
    clock.advance(0.1)
    assert client.transport.disconnecting and server.transport.disconnecting
    pump.flush()  # the disconnection is delivered
    assert "nothing received" in failure_of(pushed, LinkDown).value.message
    assert not client.is_connected


def test_pending_node_keeps_asking_until_approved():
    registry = MemoryNodeRegistry()
    registry.add("provider", "print01", CREDENTIAL, NodeStatus.PENDING)
    config = LineConfig(pending_retry=10, auth_timeout=60)
    _, client_factory, _, client, pump, clock = line_pair(registry=registry, config=config)
    d = client_factory.prepare(client)
    pump.flush()
    assert not d.called
    assert registry.status("provider", "print01") is NodeStatus.PENDING
    for _ in range(3):
        clock.advance(10)
        pump.flush()
        assert not d.called
    registry.approve("provider", "print01")
    clock.advance(10)
    pump.flush()
    assert result_of(d) is client and client.authenticated


def test_a_node_given_an_enrolment_code_sends_it_and_is_enrolled():
    registry = MemoryNodeRegistry()
    code = registry.invite("provider", "print01")
    _, client_factory, _, client, pump, _ = line_pair(registry=registry, enrolment_code=code)
    d = client_factory.prepare(client)
    pump.flush()
    assert result_of(d) is client and client.authenticated
    assert registry.status("provider", "print01") is NodeStatus.APPROVED
def test_a_pending_node_whose_connection_the_server_closed_asks_again_on_a_new_one():
    """The server closes a connection without an approved hello after auth_timeout (10 s);
    a pending node's prepare then fails with LinkDown, logged as information rather than a
    warning, so that its ClientService reconnects and says hello again."""
    registry = MemoryNodeRegistry()
    registry.add("provider", "print01", CREDENTIAL, NodeStatus.PENDING)
    config = LineConfig(pending_retry=15)
    _, client_factory, _, client, pump, clock = line_pair(registry=registry, config=config)
    d = client_factory.prepare(client)
    pump.flush()
    assert not d.called
    with capturedLogs() as events:
        for _ in range(15):
            clock.advance(1)
            pump.flush()
    assert "still waiting for approval" in failure_of(d, LinkDown).value.message
    assert not client.is_connected
    levels = {e["log_level"].name for e in events if "log_level" in e}
    assert levels == {"info"}   # the server's auth_timeout line included: nothing to warn of


def test_prepare_aborts_the_connection_when_rejected():
    registry = MemoryNodeRegistry()
    registry.add("provider", "print01", "another credential")
    _, client_factory, _, client, pump, _ = line_pair(registry=registry)
    d = client_factory.prepare(client)
    pump.flush()
    assert failure_of(d, RemoteError).value.code == "rejected"
    assert not client.is_connected


def test_client_refuses_a_plain_transport_unless_told_otherwise():
    from twisted.internet import task
    from twisted.internet.testing import StringTransport

    from pcnet.net.line import LineClientFactory

    from ._support import SERVER_ADDR

    factory = LineClientFactory(role="provider", node="n", credential="c", clock=task.Clock())
    client = factory.buildProtocol(SERVER_ADDR)
    transport = StringTransport()
    client.makeConnection(transport)
    assert transport.disconnecting and transport.value() == b""
    d = client.hello()
    client.connectionLost(Failure(Exception("closed")))
    assert "TLS" in failure_of(d, LinkDown).value.message


def test_a_reconnecting_node_replaces_its_old_connection():
    up, down = [], []
    h1 = ServerHarness()
    factory = h1.factory
    factory.on_session_up = up.append
    factory.on_session_down = lambda session, why: down.append((session, why))
    h1.hello()
    # The same node connects again through the same factory (e.g. after a silent outage).
    from twisted.internet.testing import StringTransport

    second = factory.buildProtocol(NODE_ADDR)
    t2 = StringTransport(peerAddress=NODE_ADDR)
    second.makeConnection(t2)
    second.dataReceived(json.dumps({"op": "hello", "id": 1, "version": 1, "role": "provider",
                                    "node": "print01", "credential": CREDENTIAL}).encode() + b"\n")
    assert factory.sessions[("provider", "print01")] is second
    assert h1.transport.disconnecting
    h1.lose()
    assert factory.sessions[("provider", "print01")] is second
    assert up == [h1.protocol, second]
    assert down[0][0] is h1.protocol and "replaced" in down[0][1]
