"""Fakes for the Print Provider's collaborators: a pcnet/1 session to a scripted server, CUPS."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.defer import Deferred

from pcnet.net.line import LinkDown, RemoteError
from pcnet.provider.cupsadmin import Queue


class FakeSession:
    """A connected pcnet/1 session whose server answers with `handlers[op](fields)`.

    A handler may return a dict, a Deferred, or raise (a `RemoteError` is the server's error
    reply). Ops without a handler never answer (their Deferred stays pending), as a server that
    went silent.
    """

    def __init__(self, handlers=None):
        self.handlers = dict(handlers or {})
        self.calls: list[tuple[str, dict]] = []
        self.connected = True
        self._closed = Deferred()
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

    def when_closed(self):
        return self._closed

    def drop(self):
        self.connected = False
        for d in self.pending:
            if not d.called:
                d.errback(LinkDown("dropped"))
        self._closed.callback("dropped")

    def ops(self, name):
        return [f for op, f in self.calls if op == name]


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
        from pcnet.errors import NotFound

        if name not in self.queues:
            return defer.fail(NotFound(f"no CUPS queue {name!r}"))
        return defer.succeed(self._queue(name))

    def release(self, job_id):
        from pcnet.errors import Conflict

        if job_id in self.finished:
            return defer.fail(Conflict(f"job {job_id} is canceled: nothing to release"))
        self.released.append(job_id)
        return defer.succeed(None)

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        return defer.succeed(None)


def remote_error(code, message="refused"):
    def handler(fields):
        raise RemoteError(code, message)
    return handler
