"""Test fakes, in one place, each checked against its interface with `verifyObject`
(tests/fakes/test_fakes.py):

- `ProviderSession`: a connected Print Provider as the server sees it (`ILineSession`): records
  what the server pushes (`job.release`, `job.cancel`, `journal.retry`) and answers it;
- `ServerSession`: the server as a Print Provider sees it (`ILineSession`): answers requests
  with scripted handlers, or never (a server gone silent);
- `LoopbackSession`: one end's session delivering each request to the other end's real
  operation handlers in process, through JSON, answering as pcnet/net/line.py does
  (`ILineSession`);
- `FakeCups`: CUPS as the provider sees it (`ICupsAdmin`);
- `FakeServer`: one server of a node's list of servers (`IStreamClientEndpoint`): down,
  up or rejecting the node; with `HelloFactory`, the hello a `ServerList` waits for;
- in `tests.fakes.store`: `inline_store` (the real store answering at once), `GatedStore`
  (one whose start the test releases) and `FakeChangeListener` (`IChangeListener`);
- in `tests.fakes.devices`: `ScriptedDriver` and `ScriptedDevice` (`IDeviceDriverFactory`,
  `IDevice`), whose start, status and stop do what the test says. (The device core's fake,
  `pcnet.devices.testing.FakeCore`, belongs to the drivers' conformance kit and stays there.)

Real parts are preferred where they are cheap: the store is a real SQLite or PostgreSQL store
(tests/conftest.py), the node sessions a real `NodeSessions`.
"""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from pcnet.errors import Conflict, NotFound, PcnetError
from pcnet.interfaces import ICupsAdmin, ILineSession
from pcnet.net.line import LinkDown, RemoteError
from pcnet.provider.cupsadmin import Queue

__all__ = ["FakeCups", "FakeServer", "HelloFactory", "LoopbackSession", "ProviderSession",
           "ServerSession", "peer", "remote_error"]


class _Session:
    """What both ends' fakes share: a peer, being connected, closing."""

    def __init__(self, role, node, address="192.0.2.10"):
        self.role, self.node = role, node
        self.peer = IPv4Address("TCP", address, 40000)
        self.authenticated = True
        self.connected = True
        #: This end's requests awaiting a reply (a test sets it to hold a session busy).
        self.in_flight = 0
        self.aborted: list[str] = []
        self._closed = Deferred()

    @property
    def is_connected(self):
        return self.connected

    def close(self):
        self._gone("closed")

    def lose(self, why="lost"):
        """The connection is gone under this end (the peer was killed, the network cut)."""
        self._gone(why)

    def abort(self, why):
        self.aborted.append(why)
        self._gone(why)

    def _gone(self, why):
        self.connected = False
        if not self._closed.called:
            self._closed.callback(why)

    def when_closed(self):
        return self._closed


@implementer(ILineSession)
class ProviderSession(_Session):
    """A connected Print Provider (`node`) as the server sees it. What the server pushes is
    in `pushed` as (op, fields); each push is answered with `answers[op]`: a dict, a function
    of the fields, or an exception (the provider's error reply) — `{}` when there is none.
    `fail_with` fails every push with that exception."""

    def __init__(self, node="print01", answers=None, *, role="provider", address="192.0.2.10"):
        super().__init__(role, node, address)
        self.answers = dict(answers or {})
        self.pushed: list[tuple[str, dict]] = []
        self.fail_with = None

    def request(self, op, **fields):
        self.pushed.append((op, fields))
        if not self.connected:
            return defer.fail(LinkDown("closed"))
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        answer = self.answers.get(op, {})
        if isinstance(answer, BaseException):
            return defer.fail(answer)
        return defer.maybeDeferred(answer, fields) if callable(answer) else defer.succeed(answer)

    def ops(self, name):
        return [f for op, f in self.pushed if op == name]


@implementer(ILineSession)
class ServerSession(_Session):
    """The server as a Print Provider sees it: requests are answered with `handlers[op]
    (fields)` (a dict, a Deferred, or raising: a `RemoteError` is the server's error reply).
    Ops without a handler never answer (their Deferred stays pending), as a server that went
    silent; `drop()` loses the connection, failing them with LinkDown."""

    def __init__(self, handlers=None, *, node="app"):
        super().__init__("server", node)
        self.handlers = dict(handlers or {})
        self.calls: list[tuple[str, dict]] = []
        self.pending: list[Deferred] = []

    def request(self, op, **fields):
        if not self.connected:
            return defer.fail(LinkDown("closed"))
        self.calls.append((op, fields))
        handler = self.handlers.get(op)
        if handler is None:
            d = Deferred()
            self.pending.append(d)
            return d
        return defer.maybeDeferred(handler, fields)

    def drop(self):
        self.connected = False
        for d in self.pending:
            if not d.called:
                d.errback(LinkDown("dropped"))
        self._gone("dropped")

    def ops(self, name):
        return [f for op, f in self.calls if op == name]


@implementer(ILineSession)
class LoopbackSession(_Session):
    """A session whose requests reach `handlers` (the other end's `Operations().handlers()`)
    in process, as the line protocol would deliver them: the fields travel as JSON; a
    `PcnetError` comes back as a `RemoteError` with its code; anything else is a bug, answered
    `internal` and collected in `bugs`. The handlers see `caller` as their session."""

    def __init__(self, handlers, caller=None, *, role="server", node="app"):
        super().__init__(role, node)
        self.handlers = handlers
        self.caller = caller
        self.calls: list[tuple[str, dict]] = []
        self.bugs: list = []

    def request(self, op, **fields):
        if not self.connected:
            return defer.fail(LinkDown("closed"))
        wire = json.loads(json.dumps(fields))
        self.calls.append((op, wire))
        handler = self.handlers.get(op)
        if handler is None:
            return defer.fail(RemoteError("unknown_op", op))

        def failed(f):
            if f.check(PcnetError):
                raise RemoteError(f.value.code, f.value.message)
            self.bugs.append(f)
            raise RemoteError("internal", "internal error")

        return defer.maybeDeferred(handler, self.caller, wire).addErrback(failed)


def remote_error(code, message="refused"):
    """A `ServerSession` handler that answers with the server's error `code`."""
    def handler(fields):
        raise RemoteError(code, message)
    return handler


@implementer(ICupsAdmin)
class FakeCups:
    """CUPS as the provider sees it: queues, and the release/cancel calls it made."""

    def __init__(self, queues: dict[str, str] | None = None):
        # queue name -> original device URI; all wrapped
        self.queues = dict(queues or {})
        self.released: list[int] = []
        self.cancelled: list[int] = []
        self.finished: set[int] = set()

    def _queue(self, name):
        uri = self.queues[name]
        return Queue(name=name, device_uri="pcnet:" + uri, wrapped=True, info=f"{name} info",
                     location="here", make_and_model="fake")

    def managed_queues(self):
        return defer.succeed([self._queue(n) for n in sorted(self.queues)])

    def queue(self, name):
        if name not in self.queues:
            return defer.fail(NotFound(f"no CUPS queue {name!r}"))
        return defer.succeed(self._queue(name))

    def release(self, job_id):
        if job_id in self.finished:
            return defer.fail(Conflict(f"job {job_id} is canceled: nothing to release"))
        self.released.append(job_id)
        return defer.succeed(None)

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        return defer.succeed(None)


def peer(host: str, port: int = 4000) -> IPv4Address:
    """The address a connection comes from, as Twisted gives it (a real `IPv4Address`)."""
    return IPv4Address("TCP", host, port)


@implementer(IStreamClientEndpoint)
class FakeServer:
    """One server of a node's list of servers (`pcnet.net.failover.ServerList`), as an endpoint:
    `state` "down" refuses connections, "up" approves the node's hello, "rejected" rejects it.
    Each connection is a `ServerSession` (kept in `sessions` once its hello was approved)."""

    def __init__(self, name, state="up"):
        self.name = name
        self.state = state
        self.sessions: list[ServerSession] = []

    def connect(self, protocolFactory):
        if self.state == "down":
            return defer.fail(ConnectionRefusedError())
        session = ServerSession(node=self.name)
        session.server = self
        return defer.succeed(session)


class HelloFactory:
    """The hello of a `LineClientFactory` as a `ServerList` waits for it (`prepare(session)`):
    approved by a `FakeServer` that is up, a `RemoteError("rejected")` by one that rejects."""

    def prepare(self, session):
        server = session.server
        if server.state == "rejected":
            return defer.fail(RemoteError("rejected", f"{server.name} rejects this node"))
        server.sessions.append(session)
        return defer.succeed(session)
