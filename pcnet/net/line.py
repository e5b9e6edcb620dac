"""pcnet/1, the line protocol between pcnet nodes and servers: one implementation for both ends.

Print Providers, Site Servers and device gateways connect to a server (the Application Server or
their Site Server) over TLS with ALPN `pcnet/1`, say `hello`, and from then on both ends may send
requests to each other: one JSON object per `\\n`-terminated line, requests carrying an `id`,
replies carrying `re` (that id) and `ok`. Many requests may be in flight at once and replies come
in whatever order the handlers finish. `ping` heartbeats bound how long a dead link goes
unnoticed. docs/protocol.md is the specification; this module is the reference implementation.

The pieces:

- `Operations`: the registry of request handlers, `op name -> handler(session, message)`,
  a handler returning a dict, a Deferred of one, or a coroutine;
- `LineProtocol`: the symmetric core (framing, dispatch, requests, heartbeats);
  `LineServerProtocol` adds hello checking against an `INodeRegistry`, and
  `LineClientProtocol` adds the ALPN check and `hello()`;
- `LineServerFactory` / `LineClientFactory` and `connect()` to build them (a node that must
  stay connected runs a `ClientService` with `prepareConnection=factory.prepare`, as the Print
  Provider does).

Time comes only from the `IReactorTime` given to the factories, so tests drive heartbeats with
`task.Clock`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from inspect import iscoroutine
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, INegotiated, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pcnet.domain.enrolment import MAX_CODE_LENGTH
from pcnet.errors import Conflict, InvalidInput, PcnetError
from pcnet.interfaces import ILineSession
from pcnet.net._framing import LineFraming
from pcnet.net.limits import RateLimitedLog, StrangerWork
from pcnet.net.registry import ROLES, NodeStatus
from pcnet.net.tls import ALPN_PCNET

PROTOCOL_VERSION = 1

log = Logger(namespace="pcnet.net.line")


# --- errors -------------------------------------------------------------------------------------


class RemoteError(PcnetError):
    """The peer answered a request with an error. `code` and `message` are the peer's.

    Being a `PcnetError` with the peer's code, it can be re-raised as is: a Site Server that
    forwards a request and gets `insufficient_funds` back passes `insufficient_funds` on.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)

    def __repr__(self) -> str:
        return f"RemoteError({self.code!r}, {self.message!r})"


class LinkDown(PcnetError):
    """The connection is gone (closed, lost, heartbeat missed) or was never usable.

    Local only: never sent on the wire. A request that fails this way may or may not have been
    executed by the peer.
    """

    code = "link_down"
    http_status = 503


class Malformed(PcnetError):
    code = "malformed"


class UnknownOp(PcnetError):
    code = "unknown_op"


class NotAuthenticated(PcnetError):
    code = "not_authenticated"
    http_status = 401


class NodePending(PcnetError):
    """The node is known but waits for an administrator's approval; it may say hello again."""

    code = "pending"
    http_status = 403


class NodeRejected(PcnetError):
    code = "rejected"
    http_status = 403
    closes_connection = True


class UnsupportedVersion(PcnetError):
    code = "unsupported_version"
    closes_connection = True


class _StillPending(LinkDown):
    """Client side: the node is still pending and its connection is gone; reconnect."""


class BadHello(InvalidInput):
    closes_connection = True


def hello_text(msg: dict, field: str, longest: int) -> str:
    """A hello's text field: a string of 1 to `longest` printable characters, or `BadHello`.

    Printable rules out what would fail later, after the check, as an `internal` error or a
    confusing log line: NUL (which PostgreSQL refuses), control characters, and lone
    surrogates (`"\\ud800"` is valid JSON but cannot be encoded as UTF-8 to be hashed or stored).
    """
    value = msg.get(field)
    if type(value) is not str or not 0 < len(value) <= longest or not value.isprintable():
        raise BadHello(f"{field} must be a string of 1 to {longest} printable characters")
    return value


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineConfig:
    """The knobs of one end of a pcnet/1 link (docs/protocol.md, "Limits and timing").

    - `max_line_length`: longest line accepted, in bytes without the `\\n`;
    - `heartbeat_interval`: a ping is sent when nothing else was sent for this long (seconds),
      so the peer hears from this end at least once per interval;
    - `missed_beats`: the link is declared down after `heartbeat_interval * missed_beats`
      seconds with nothing received (`detection_time`);
    - `max_in_flight`: how many of the peer's requests may be in progress at once (handlers
      that have not finished); more get a `busy` error;
    - `auth_timeout` (server): an unauthenticated connection is closed this long after it opened
      (after its TLS handshake), a pending node's included: it says hello again on a new one;
    - `hello_line_length` (server): longest line accepted until a hello is approved (a hello is
      a few hundred bytes), so a stranger cannot make the server buffer `max_line_length`
      (the smaller of the two applies);
    - `max_lines_before_hello` (server): messages accepted until a hello is approved; past it the
      connection is closed (hellos and pings only need a handful);
    - `pending_retry` (client): how often a pending node repeats its hello.
    """

    max_line_length: int = 1 << 20
    heartbeat_interval: float = 5.0
    missed_beats: int = 3
    max_in_flight: int = 1000
    auth_timeout: float = 10.0
    hello_line_length: int = 4096
    max_lines_before_hello: int = 64
    pending_retry: float = 15.0

    def __post_init__(self):
        if self.max_line_length < 1024:
            raise ValueError("max_line_length must be at least 1024 bytes")
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if self.missed_beats < 2:
            # With 1, a ping delayed in transit by a hair would already count as a miss.
            raise ValueError("missed_beats must be at least 2")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.auth_timeout <= 0 or self.pending_retry <= 0:
            raise ValueError("auth_timeout and pending_retry must be positive")
        if self.hello_line_length < 1024:
            raise ValueError("hello_line_length must be at least 1024 bytes")
        if self.max_lines_before_hello < 4:
            raise ValueError("max_lines_before_hello must be at least 4")

    @property
    def detection_time(self) -> float:
        """Seconds of silence after which the link is declared down."""
        return self.heartbeat_interval * self.missed_beats


# --- operations ---------------------------------------------------------------------------------

Handler = Callable[[Any, dict], Any]

_RESERVED_OPS = frozenset({"hello", "ping"})


class Operations:
    """The operations one end answers: `op name -> handler(session, message)`.

    A handler gets the session (the connection, an `ILineSession`) and the whole request
    message, and returns the reply's fields as a dict (or None for none), a Deferred firing
    with one, or a coroutine (an `async def` handler). Raising a `PcnetError` sends an error
    reply with its code; any other exception is logged and answered with `internal`.

        ops = Operations()

        @ops.op("job.decide")
        async def decide(session, message):
            ...
            return {"action": "print"}

    `hello` and `ping` are built in and cannot be registered.
    """

    def __init__(self, handlers: Mapping[str, Handler] | None = None):
        self._handlers: dict[str, Handler] = {}
        for name, handler in (handlers or {}).items():
            self.register(name, handler)

    def register(self, name: str, handler: Handler) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("an operation name is a non-empty string")
        if name in _RESERVED_OPS:
            raise ValueError(f"operation {name!r} is built into pcnet/1")
        if name in self._handlers:
            raise ValueError(f"operation {name!r} is already registered")
        self._handlers[name] = handler

    def op(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(name, handler)
            return handler

        return decorate

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: str) -> bool:
        return name in self._handlers

    def handlers(self) -> dict[str, Handler]:
        return dict(self._handlers)


def _op_ping(session, message):
    return _NO_FIELDS


def _op_hello(session, message):
    return session._hello(message)


_NO_FIELDS: dict = {}

# Timer slack, so float rounding never makes a heartbeat fire a hair early and reschedule.
_EPSILON = 1e-6


# --- JSON -----------------------------------------------------------------------------------------


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_json_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_json_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_decode = _json_decoder.decode

# The hot path calls the C encoder and scanner directly. JSONEncoder.encode() builds a new C
# encoder on every call, and JSONDecoder.decode() runs two whitespace regexes around the scanner;
# together that is a fifth of the cost of a request. No circular-reference check: a cyclic
# reply hits the recursion limit instead, which is reported like any unencodable reply.
if c_make_encoder is not None:
    _c_encoder = c_make_encoder(
        None, _json_encoder.default, encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def _encode(obj) -> str:
        return "".join(_c_encoder(obj, 0))

else:  # pragma: no cover - an interpreter without the _json accelerator
    _encode = _json_encoder.encode

_scan = _json_decoder.scan_once


def _loads(text: str):
    """Parse one line; ValueError unless it is exactly one JSON value (whitespace aside)."""
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        # Not a value at offset 0 (leading whitespace, or garbage): let decode() sort it out.
        return _decode(text)
    if end != len(text):
        return _decode(text)  # trailing whitespace is fine, trailing garbage raises
    return obj


def _error_line(rid, code: str, message: str) -> bytes:
    return (
        _encode({"re": rid, "ok": False, "error": {"code": code, "message": message}}).encode()
        + b"\n"
    )


# --- the protocol -------------------------------------------------------------------------------


@implementer(ILineSession)
class LineProtocol(LineFraming):
    """One end of a pcnet/1 connection (either end: see the subclasses).

    It is also the session handlers receive: `role`, `node` and `authenticated` describe the
    peer, `peer` is its address, `request()` sends it a request.
    """

    role: str | None = None
    node: str | None = None
    authenticated = False
    peer = None

    # Until the hello is approved only these operations are answered (server side).
    _locked = False
    _PREAUTH_OPS = frozenset({"hello", "ping"})

    def __init__(self, ops: Operations, config: LineConfig, clock: IReactorTime):
        super().__init__()
        self.config = config
        self.max_line_length = config.max_line_length
        self._clock = clock
        self._handlers = ops.handlers()
        self._handlers["ping"] = _op_ping
        self._pending: dict[Any, Deferred] = {}
        self._next_id = 0
        self._open = False
        self._last_sent = 0.0
        self._last_received = 0.0
        self._beat = None
        self._down_reason: str | None = None
        self._detection_time = config.detection_time
        self._closed_waiters: list[Deferred] = []
        self._lost = False
        self._serving = 0  # the peer's requests whose (asynchronous) handlers are running
        self._max_in_flight = config.max_in_flight

    def __repr__(self) -> str:
        who = f"{self.role} {self.node}" if self.authenticated else "unauthenticated"
        return f"<{type(self).__name__} {who} {self._peer_text()}>"

    def _peer_text(self) -> str:
        p = self.peer
        host = getattr(p, "host", None)
        return f"{host}:{p.port}" if host is not None else str(p)

    # --- connection life -----------------------------------------------------------------

    def connectionMade(self) -> None:
        self._open = True
        self.peer = self.transport.getPeer()
        self._last_received = self._last_sent = self._clock.seconds()
        if not self._locked:
            self._start_heartbeats()

    def _start_heartbeats(self) -> None:
        self._beat = self._clock.callLater(self.config.heartbeat_interval, self._heartbeat)

    def connectionLost(self, reason: Failure) -> None:
        self._open = False
        self._lost = True
        self._stopped = True
        self.connected = False
        if self._beat is not None and self._beat.active():
            self._beat.cancel()
        self._beat = None
        why = self._down_reason or f"connection lost: {reason.getErrorMessage()}"
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(LinkDown(why))
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(why)

    @property
    def is_connected(self) -> bool:
        """True from connection until the connection is closed (or closing)."""
        return self._open and not self._stopped

    def close(self) -> None:
        """Close gracefully: replies already written are still delivered."""
        self._stopped = True
        if self._open:
            self.transport.loseConnection()

    def abort(self, why: str) -> None:
        """Drop the connection at once; pending requests fail with `LinkDown(why)`."""
        self._stopped = True
        if self._down_reason is None:
            self._down_reason = why
        if self._open:
            self.transport.abortConnection()

    def when_closed(self) -> Deferred:
        """A Deferred firing (with the reason, as text) once the connection is gone."""
        if self._lost:
            return defer.succeed(self._down_reason or "closed")
        d = Deferred()
        self._closed_waiters.append(d)
        return d

    # --- receiving ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # Any byte counts as a sign of life, even part of a long line.
        self._last_received = self._clock.seconds()
        LineFraming.dataReceived(self, data)

    def lineReceived(self, line: bytes) -> None:
        if self._locked and self._one_more_line_before_hello():
            return
        try:
            msg = _loads(line.decode())
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            self._send_error(None, "malformed", "not a UTF-8 JSON object")
            return
        if type(msg) is not dict:
            self._send_error(None, "malformed", "not a JSON object")
            return
        if "re" in msg:
            self._reply_received(msg)
            return
        rid = msg.get("id")
        if type(rid) is not int and type(rid) is not str:
            self._send_error(None, "malformed", "a request needs an integer or string id")
            return
        op = msg.get("op")
        if type(op) is not str:
            self._send_error(rid, "malformed", "a request needs an op")
            return
        if self._locked and op not in self._PREAUTH_OPS:
            self._send_error(rid, "not_authenticated", "say hello first")
            return
        handler = self._handlers.get(op)
        if handler is None:
            self._send_error(rid, "unknown_op", f"unknown operation {op[:100]!r}")
            return
        if self._serving >= self._max_in_flight:
            # Without this a peer that never stops sending could make us hold unbounded work.
            self._send_error(
                rid, "busy", f"more than {self._max_in_flight} requests in progress; retry later"
            )
            return
        try:
            result = handler(self, msg)
        except Exception:
            self._handler_failed(Failure(), rid, op)
            return
        if type(result) is dict:
            self._send_result(result, rid, op)
        elif isinstance(result, Deferred):
            self._serving += 1
            result.addCallbacks(
                self._async_result,
                self._async_failed,
                callbackArgs=(rid, op),
                errbackArgs=(rid, op),
            )
        elif iscoroutine(result):
            self._serving += 1
            Deferred.fromCoroutine(result).addCallbacks(
                self._async_result,
                self._async_failed,
                callbackArgs=(rid, op),
                errbackArgs=(rid, op),
            )
        else:
            self._send_result(result, rid, op)

    def _async_result(self, result, rid, op) -> None:
        self._serving -= 1
        self._send_result(result, rid, op)

    def _async_failed(self, failure: Failure, rid, op) -> None:
        self._serving -= 1
        self._handler_failed(failure, rid, op)

    def _send_result(self, result, rid, op) -> None:
        if not self._open:
            return  # the requester is gone; its side already failed the request
        if result is None:
            result = _NO_FIELDS
        elif type(result) is not dict:
            log.error(
                "pcnet/1 handler for {op!r} returned {kind}, not a dict",
                op=op,
                kind=type(result).__name__,
            )
            self._send_error(rid, "internal", "internal error (logged on the answering side)")
            return
        if "re" in result or "ok" in result:
            log.error("pcnet/1 handler for {op!r} returned a reserved field (re/ok)", op=op)
            self._send_error(rid, "internal", "internal error (logged on the answering side)")
            return
        reply = {"re": rid, "ok": True}
        reply.update(result)
        try:
            data = _encode(reply)
        except (TypeError, ValueError, RecursionError):
            log.failure("pcnet/1 reply to {op!r} is not JSON", op=op)
            self._send_error(rid, "internal", "internal error (logged on the answering side)")
            return
        self._last_sent = self._clock.seconds()
        self.transport.write(data.encode() + b"\n")

    def _handler_failed(self, failure: Failure, rid, op) -> None:
        exc = failure.value
        if isinstance(exc, PcnetError):
            self._send_error(rid, exc.code, exc.message)
            if getattr(exc, "closes_connection", False):
                self.close()
            return
        log.failure(
            "pcnet/1 handler for {op!r} failed (request from {session})",
            failure,
            op=op,
            session=self,
        )
        self._send_error(rid, "internal", "internal error (logged on the answering side)")

    def _send_error(self, rid, code: str, message: str) -> None:
        if not self._open:
            return
        self._last_sent = self._clock.seconds()
        self.transport.write(_error_line(rid, code, message))

    def _reply_received(self, msg: dict) -> None:
        rid = msg.pop("re")
        try:
            d = self._pending.pop(rid, None)
        except TypeError:  # an unhashable `re`: nothing of ours
            d = None
        if d is None:
            if rid is None:
                # The peer complains about a line of ours it could not attribute to a request,
                # or says why it closes: a pending node's hello deadline is no cause for alarm.
                error = msg.get("error")
                expected = isinstance(error, dict) and error.get("code") == "auth_timeout"
                (log.info if expected else log.warn)(
                    "pcnet/1 peer {session} reports an error: {error}", session=self, error=error
                )
            else:
                # Typically the reply to a request we cancelled (timeout): nothing to do.
                log.debug("pcnet/1 reply to no pending request ({re!r})", re=rid)
            return
        if msg.pop("ok", None) is True:
            d.callback(msg)
            return
        error = msg.get("error")
        code = message = None
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
        d.errback(
            RemoteError(
                code if isinstance(code, str) else "error",
                message if isinstance(message, str) else "error without a message",
            )
        )

    def _one_more_line_before_hello(self) -> bool:
        """Server side, before an approved hello: True when this line is one too many."""
        return False

    def lineLengthExceeded(self, length: int) -> None:
        limit = self.max_line_length
        if self._locked:
            self._stranger_event(
                "line_too_long",
                "pcnet/1 {peer} sent a line over {limit} bytes before an approved hello; closing",
                peer=self._peer_text(),
                limit=limit,
            )
            before = " before an approved hello"
        else:
            log.warn(
                "pcnet/1 peer {session} sent a line over {limit} bytes; closing",
                session=self,
                limit=limit,
            )
            before = ""
        self._send_error(None, "line_too_long", f"line longer than {limit} bytes{before}; closing")
        self._down_reason = f"peer sent a line longer than {limit} bytes{before}"
        self.close()

    def _stranger_event(self, kind: str, fmt: str, **fields) -> None:
        log.info(fmt, **fields)

    # --- sending requests ------------------------------------------------------------------

    def request(self, op: str, /, **fields) -> Deferred:
        """Send a request; a Deferred firing with the reply's fields (without `re`/`ok`).

        It fails with `RemoteError(code, message)` if the peer answers with an error, and with
        `LinkDown` if the connection is (or goes) down before the reply. Cancelling it (e.g.
        through `Deferred.addTimeout(seconds, clock)`) forgets the request; the peer may still
        execute it, and its late reply is ignored.
        """
        if not self._open or self._stopped:
            return defer.fail(LinkDown(self._down_reason or "not connected"))
        if "id" in fields or "op" in fields:
            return defer.fail(TypeError("`id` and `op` are set by request()"))
        self._next_id += 1
        rid = self._next_id
        msg = {"op": op, "id": rid}
        if fields:
            msg.update(fields)
        try:
            data = _encode(msg)
        except (TypeError, ValueError, RecursionError):
            return defer.fail()
        pending = self._pending
        d = Deferred(lambda _: pending.pop(rid, None))
        pending[rid] = d
        self._last_sent = self._clock.seconds()
        self.transport.write(data.encode() + b"\n")
        return d

    @property
    def in_flight(self) -> int:
        """How many of our requests await a reply."""
        return len(self._pending)

    # --- heartbeats -------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        self._beat = None
        if not self._open:
            return
        now = self._clock.seconds()
        silent = now - self._last_received
        if silent >= self._detection_time - _EPSILON:
            log.warn(
                "pcnet/1 link to {session} is down: nothing received for {silent:.1f} s",
                session=self,
                silent=silent,
            )
            self.abort(f"link down: nothing received for {silent:.1f} s")
            return
        interval = self.config.heartbeat_interval
        if now - self._last_sent >= interval - _EPSILON:
            # The peer hears from us at least once per interval. The reply (any reply, even
            # an error) is the pong, which also keeps our own detector quiet.
            self.request("ping").addErrback(lambda _: None)
        # Wake when the next ping is due, or exactly when the silence would reach the
        # detection time, whichever comes first.
        wake = min(self._last_sent + interval, self._last_received + self._detection_time)
        self._beat = self._clock.callLater(max(wake - now, _EPSILON), self._heartbeat)


def _enrolment_code(msg: dict) -> dict:
    """The hello's optional `enrolment_code`, as keyword arguments for `INodeRegistry.check`
    (none when absent, so registries that predate enrolment still work)."""
    code = msg.get("enrolment_code")
    if code is None:
        return {}
    if (not isinstance(code, str) or not 0 < len(code) <= MAX_CODE_LENGTH or not code.isascii()
            or not code.isprintable()):
        raise BadHello(f"enrolment_code must be printable ASCII of 1 to {MAX_CODE_LENGTH} characters")
    return {"enrolment_code": code}


class LineServerProtocol(LineProtocol):
    """The server end: answers only `hello` and `ping` until a hello is approved."""

    _locked = True

    def __init__(self, factory: LineServerFactory):
        super().__init__(factory.ops, factory.config, factory.clock)
        self.factory = factory
        self._handlers["hello"] = _op_hello
        self._hello_busy = False
        self._auth_timer = None
        # Until a hello is approved a stranger may send only short lines, and only a few.
        self.max_line_length = min(self.config.hello_line_length, self.config.max_line_length)
        self._lines_before_hello = 0

    def _one_more_line_before_hello(self) -> bool:
        self._lines_before_hello += 1
        limit = self.config.max_lines_before_hello
        if self._lines_before_hello <= limit:
            return False
        self._stranger_event(
            "too_many_lines",
            "pcnet/1 {peer} sent more than {limit} messages without an approved hello; closing",
            peer=self._peer_text(),
            limit=limit,
        )
        self._send_error(
            None, "not_authenticated",
            f"more than {limit} messages without an approved hello; closing",
        )
        self._down_reason = "too many messages before an approved hello"
        self.close()
        return True

    def _stranger_event(self, kind: str, fmt: str, **fields) -> None:
        # Strangers' misbehaviour is logged at most once a minute per kind: no log floods.
        self.factory.stranger_log.event(kind, fmt, **fields)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._auth_timer = self._clock.callLater(self.config.auth_timeout, self._auth_expired)

    def connectionLost(self, reason: Failure) -> None:
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        super().connectionLost(reason)
        if self.authenticated:
            self.factory._session_down(self, self._down_reason or reason.getErrorMessage())

    def _auth_expired(self) -> None:
        # Connections opened together expire together: take turns with the reactor's other
        # work rather than closing a few thousand in one go.
        self._auth_timer = None
        self.factory.stranger_work.add(self._close_unapproved)

    def _close_unapproved(self) -> None:
        if self._open and not self.authenticated:
            self._stranger_event(
                "auth_timeout",
                "pcnet/1 {peer} not approved within {timeout:g} s of connecting; closing",
                peer=self._peer_text(),
                timeout=self.config.auth_timeout,
            )
            self._send_error(
                None,
                "auth_timeout",
                f"no approved hello within {self.config.auth_timeout:g} s; closing",
            )
            self._down_reason = "not approved in time"
            self.close()

    async def _hello(self, msg: dict) -> dict:
        if self.authenticated:
            raise Conflict(f"already authenticated as {self.role} {self.node}")
        if self._hello_busy:
            raise Conflict("a hello is already being checked")
        version = msg.get("version")
        if type(version) is not int or not 0 <= version < 1 << 31:
            raise BadHello("version must be a protocol version number (an integer)")
        if version != PROTOCOL_VERSION:
            raise UnsupportedVersion(
                f"this server speaks pcnet/1 version {PROTOCOL_VERSION}, not {version}"
            )
        role = msg.get("role")
        if type(role) is not str or role not in ROLES:
            raise BadHello(f"role must be one of {', '.join(ROLES)}")
        node = hello_text(msg, "node", 255)
        credential = hello_text(msg, "credential", 1024)
        enrolment = _enrolment_code(msg)
        self._hello_busy = True
        try:
            status = await defer.maybeDeferred(
                self.factory.registry.check, role, node, credential, self.peer, **enrolment
            )
        finally:
            self._hello_busy = False
        status = NodeStatus(status)
        if status is NodeStatus.APPROVED:
            self._approved(role, node)
            return {
                "version": PROTOCOL_VERSION,
                "server": self.factory.server_name,
                "heartbeat_interval": self.config.heartbeat_interval,
                "missed_beats": self.config.missed_beats,
                "max_line_length": self.config.max_line_length,
            }
        if status is NodeStatus.PENDING:
            log.info(
                "pcnet/1 {role} {node!r} at {peer} is waiting for approval",
                role=role,
                node=node,
                peer=self._peer_text(),
            )
            raise NodePending(
                f"{role} {node!r} is waiting for an administrator's approval; say hello again "
                f"later (this connection closes {self.config.auth_timeout:g} s after it opened: "
                f"reconnect to ask again)"
            )
        log.warn(
            "pcnet/1 {role} {node!r} at {peer} rejected",
            role=role,
            node=node,
            peer=self._peer_text(),
        )
        raise NodeRejected(
            f"{role} {node!r} may not connect (a new node needs a valid enrolment code from "
            f"an administrator; a known one its own credential)"
        )

    def _approved(self, role: str, node: str) -> None:
        if not self._open:
            return
        self.role, self.node = role, node
        self.authenticated = True
        self._locked = False
        self.max_line_length = self.config.max_line_length
        # Heartbeats start with the session: a stranger is not worth pinging (the hello
        # deadline ends its connection sooner than a missed beat would).
        self._last_received = self._last_sent = self._clock.seconds()
        self._start_heartbeats()
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        self.factory._session_up(self)


@implementer(IHandshakeListener)
class LineClientProtocol(LineProtocol):
    """The node end: checks that the server agreed to pcnet/1, then `hello()`."""

    def __init__(self, factory: LineClientFactory):
        super().__init__(factory.ops, factory.config, factory.clock)
        self.factory = factory
        self.server_info: dict | None = None
        # Who waits for the TLS handshake; None once it is over (see _handshake_error).
        self._handshake_waiters: list[Deferred] | None = []
        self._handshake_error: str | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        if not INegotiated.providedBy(self.transport):
            if self.factory.require_tls:
                self.abort("pcnet/1 is only spoken over TLS (connect with a TLS endpoint)")
            else:
                self._handshake_done(None)

    def handshakeCompleted(self) -> None:
        negotiated = self.transport.negotiatedProtocol
        if negotiated != ALPN_PCNET:
            why = f"the server does not speak pcnet/1 (ALPN gave {negotiated!r})"
            log.error("pcnet/1 {peer}: {why}", peer=self._peer_text(), why=why)
            self._handshake_done(why)
            self.abort(why)
        else:
            self._handshake_done(None)

    def _handshake_done(self, error: str | None) -> None:
        waiters, self._handshake_waiters = self._handshake_waiters, None
        if waiters is None:
            return
        self._handshake_error = error
        for d in waiters:
            d.callback(None)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._handshake_done(
            self._down_reason
            or f"connection lost before the TLS handshake completed: {reason.getErrorMessage()}"
        )

    def hello(self) -> Deferred:
        """Introduce this node; a Deferred firing with the server's hello reply.

        Waits for the TLS handshake first, so the credential goes only to a verified server.
        Fails with `RemoteError` (code `pending`, `rejected`, ...) or `LinkDown`.
        """
        return Deferred.fromCoroutine(self._hello_exchange())

    async def _hello_exchange(self) -> dict:
        if self._handshake_waiters is not None:
            d = Deferred()
            self._handshake_waiters.append(d)
            await d
        if self._handshake_error is not None:
            raise LinkDown(self._handshake_error)
        f = self.factory
        enrolment = {"enrolment_code": f.enrolment_code} if f.enrolment_code else {}
        reply = await self.request(
            "hello",
            version=PROTOCOL_VERSION,
            role=f.role,
            node=f.node,
            credential=f.credential,
            **enrolment,
        )
        self.server_info = reply
        self.role = "server"
        self.node = reply.get("server")
        self.authenticated = True
        return reply


# --- factories ---------------------------------------------------------------------------------


class LineServerFactory(Factory):
    """Builds the server end of pcnet/1 connections (give it to `MultiplexingFactory`).

    `sessions` maps `(role, node)` to the live, approved connection of that node (the same dict
    for the factory's lifetime, so it may be shared). A node that connects again replaces its
    old connection, which is aborted: after a silent outage the new connection is the one that
    works. Give one factory to all of a server's listeners so this holds across ports. `on_session_up(session)` and
    `on_session_down(session, why)` are called as nodes come and go.
    """

    noisy = False

    def __init__(
        self,
        ops: Operations,
        registry,
        *,
        clock: IReactorTime,
        config: LineConfig | None = None,
        server_name: str = "pcnet",
        on_session_up: Callable[[LineServerProtocol], object] | None = None,
        on_session_down: Callable[[LineServerProtocol, str], object] | None = None,
    ):
        self.ops = ops
        self.registry = registry
        self.clock = clock
        self.config = config if config is not None else LineConfig()
        self.server_name = server_name
        self.on_session_up = on_session_up
        self.on_session_down = on_session_down
        self.sessions: dict[tuple[str, str], LineServerProtocol] = {}
        # Lines about connections that never got an approved hello, at most one a minute per
        # kind: strangers cannot flood the log.
        self.stranger_log = RateLimitedLog(clock, log, level="info")
        self.stranger_work = StrangerWork(clock)

    def buildProtocol(self, addr) -> LineServerProtocol:
        return LineServerProtocol(self)

    def _session_up(self, session: LineServerProtocol) -> None:
        key = (session.role, session.node)
        old = self.sessions.get(key)
        self.sessions[key] = session
        log.info("pcnet/1 {role} {node!r} connected from {peer}", role=key[0], node=key[1],
                 peer=session._peer_text())
        if old is not None and old is not session:
            old.abort(f"replaced by a new connection from {session._peer_text()}")
        if self.on_session_up is not None:
            self.on_session_up(session)

    def _session_down(self, session: LineServerProtocol, why: str) -> None:
        key = (session.role, session.node)
        if self.sessions.get(key) is session:
            del self.sessions[key]
        log.info("pcnet/1 {role} {node!r} disconnected: {why}", role=key[0], node=key[1], why=why)
        if self.on_session_down is not None:
            self.on_session_down(session, why)


class LineClientFactory(Factory):
    """Builds the node end of pcnet/1 connections.

    `ops` are the operations this node answers (requests the server pushes). `prepare` is the
    `prepareConnection` for a `ClientService`: it says hello, repeating it every
    `config.pending_retry` seconds while the node is pending. `enrolment_code` is the one-time
    code an administrator issued for this node (sent in every hello; the server ignores it once
    the node is enrolled). `require_tls=False` exists for tests over in-memory transports only.
    """

    noisy = False

    def __init__(
        self,
        *,
        role: str,
        node: str,
        credential: str,
        clock: IReactorTime,
        ops: Operations | None = None,
        config: LineConfig | None = None,
        require_tls: bool = True,
        enrolment_code: str | None = None,
    ):
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.role, self.node, self.credential = role, node, credential
        self.enrolment_code = enrolment_code or None
        self.clock = clock
        self.ops = ops if ops is not None else Operations()
        self.config = config if config is not None else LineConfig()
        self.require_tls = require_tls
        #: Seconds one hello may wait for its answer (None: no limit).
        self.hello_timeout: float | None = None

    def buildProtocol(self, addr) -> LineClientProtocol:
        return LineClientProtocol(self)

    def prepare(self, protocol: LineClientProtocol) -> Deferred:
        """Say hello until approved; on any other outcome abort the connection and fail."""
        return Deferred.fromCoroutine(self._prepare(protocol))

    async def _prepare(self, protocol) -> LineClientProtocol:
        try:
            while True:
                try:
                    hello = protocol.hello()
                    if self.hello_timeout:
                        hello.addTimeout(self.hello_timeout, self.clock)
                    await hello
                    return protocol
                except RemoteError as e:
                    if e.code != "pending":
                        raise
                    log.info(
                        "pcnet/1 {role} {node!r} waits for approval on the server; "
                        "asking again in {retry:g} s",
                        role=self.role,
                        node=self.node,
                        retry=self.config.pending_retry,
                    )
                await task.deferLater(self.clock, self.config.pending_retry)
                if not protocol.is_connected:
                    # The server closes a connection that has no approved hello after a short
                    # while (its auth_timeout): ask again on a new connection, which the caller
                    # (ClientService) makes. Not worth a warning: waiting is what pending means.
                    raise _StillPending(
                        "still waiting for approval; the server closed the connection, "
                        "asking again on a new one"
                    )
        except _StillPending as e:
            log.info("pcnet/1 {role} {node!r}: {why}", role=self.role, node=self.node, why=e)
            protocol.abort(str(e))
            raise
        except BaseException as e:
            # Not logged here: the caller says what it does about it, in one line
            # (pcnet.net.failover: once per server and reason).
            protocol.abort(f"hello failed: {e}")
            raise


def connect(endpoint, factory: LineClientFactory) -> Deferred:
    """Connect once through `endpoint` (a TLS client endpoint) and say hello.

    Fires with the approved `LineClientProtocol`, or fails (`RemoteError` for `rejected`,
    `LinkDown`, a connection or TLS verification error). While the node is pending it keeps
    asking (cancel the Deferred to give up).
    """

    async def run():
        protocol = await endpoint.connect(factory)
        return await factory.prepare(protocol)

    return Deferred.fromCoroutine(run())
