"""One pcnet/1 session with the first server of a list that answers: fail over, and back.

A node (a Print Provider) names its servers in order — two Application Servers on one
PostgreSQL, or its site's Site Server and the Application Server. `ServerList` keeps exactly
one approved session:

- it tries the servers in order, each with a bounded connect and hello; the first that approves
  the node gets the session (`on_session(session, server)`);
- when the session is lost (the server was killed, the link cut and the heartbeats missed),
  it starts again from the top of the list, at once: a server that died is refused in
  milliseconds and the next one is asked;
- when every server failed it waits (exponential backoff up to `max_delay`) and goes round
  again; a round in which every server *rejected* the node waits `rejected_delay` (the node's
  name or credential is not accepted: only an administrator can fix that) and says so in one
  line, never a traceback;
- while its session is with a server other than the first, every `failback_interval` seconds
  it asks the servers before it; when one approves, the session moves there (the new session
  is handed over first, then the old one is closed once it has no request in flight), so a
  recovered first server gets its nodes back;
- a pending node (waiting for an administrator's approval) keeps asking the server that said
  so (every server of one deployment shares its nodes).

A job's decision is idempotent on its uuid at every server of one deployment, so a request
that was in flight when a session moved is decided once, whichever server answers it.

This replaces `twisted.application.internet.ClientService`, whose state machine raises
automat's `NoTransition` (logged as a critical traceback, on every retry) when a connection
closes before `prepareConnection` has finished — which is what a rejected or pending hello does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from pcnet.net.line import RemoteError

log = Logger(namespace="pcnet.net.failover")


@dataclass(frozen=True)
class Server:
    """One server of the list: `name` for messages (and the name its certificate must carry),
    `endpoint` a TLS client endpoint (`IStreamClientEndpoint`)."""

    name: str
    endpoint: object


class ServerList(Service):
    """See the module's doc. `factory` is the node's `LineClientFactory` (its `prepare`
    says hello); `connect_timeout` bounds the TCP connect and TLS handshake, `hello_timeout`
    one hello's answer."""

    name = "link"

    def __init__(self, servers: Sequence[Server], factory, *, clock,
                 on_session: Callable[[object, Server], object], initial_delay: float = 0.5,
                 max_delay: float = 30.0, rejected_delay: float = 300.0,
                 failback_interval: float = 60.0, connect_timeout: float = 10.0,
                 hello_timeout: float = 30.0):
        if not servers:
            raise ValueError("at least one server")
        self.servers = list(servers)
        self.factory = factory
        self.clock = clock
        self.on_session = on_session
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.rejected_delay = rejected_delay
        self.failback_interval = failback_interval
        self.connect_timeout = connect_timeout
        self.hello_timeout = hello_timeout
        #: The current session and the index of its server, or None.
        self.session = None
        self.current: int | None = None
        self._loop: Deferred | None = None
        self._sleep: Deferred | None = None
        self._attempt: Deferred | None = None
        self._said: dict[int, str] = {}

    # --- life cycle -------------------------------------------------------------------------------

    def startService(self):
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(self._crashed)

    def _crashed(self, failure):
        if not failure.check(CancelledError):
            log.failure("the link to the servers stopped", failure)

    def stopService(self):
        super().stopService()
        for d in (self._sleep, self._attempt):
            if d is not None and not d.called:
                d.cancel()
        session, self.session = self.session, None
        if session is not None:
            session.close()
            closed = session.when_closed()
            return closed.addBoth(lambda _: None)
        return defer.succeed(None)

    # --- the loop -------------------------------------------------------------------------------------

    async def _run(self):
        failures = 0
        while self.running:
            outcome = await self._round(range(len(self.servers)))
            if not self.running:
                return
            if outcome is None:
                failures = 0
                await self._serve()
                continue
            failures += 1
            if outcome == "rejected":
                delay = self.rejected_delay
                log.error("every server rejected this node; asking again in {delay:g} s (an "
                          "administrator must approve it, or issue a new enrolment code: "
                          "`pcnet nodes invite NAME`, then set [server] enrolment_code)",
                          delay=delay)
            else:
                delay = min(self.max_delay, self.initial_delay * 2 ** (failures - 1))
                log.info("no server answered; trying again in {delay:g} s", delay=delay)
            await self._pause(delay)

    async def _round(self, indexes) -> str | None:
        """Try these servers in order; None once one gave a session, else "rejected" (every
        one rejected the node) or "failed"."""
        rejected = 0
        tried = 0
        for i in indexes:
            if not self.running:
                return "failed"
            tried += 1
            try:
                session = await self._connect(i)
            except CancelledError:
                return "failed"
            except RemoteError as e:
                if e.code == "rejected":
                    rejected += 1
                self._note(i, f"{e.code}: {e.message}")
                continue
            except Exception as e:
                self._note(i, _why(e))
                continue
            self._up(session, i)
            return None
        return "rejected" if tried and rejected == tried else "failed"

    async def _connect(self, i: int):
        server = self.servers[i]
        connecting = self._attempt = server.endpoint.connect(self.factory)
        connecting.addTimeout(self.connect_timeout, self.clock)
        try:
            protocol = await connecting
        finally:
            self._attempt = None
        hello = self._attempt = self.factory.prepare(protocol)
        try:
            return await hello
        finally:
            self._attempt = None

    def _note(self, i: int, why: str) -> None:
        """One line per server and reason: the same failure again is not repeated."""
        if self._said.get(i) == why:
            return
        self._said[i] = why
        log.warn("server {server} ({n} of {total}): {why}", server=self.servers[i].name,
                 n=i + 1, total=len(self.servers), why=why)

    def _up(self, session, i: int) -> None:
        self._said.pop(i, None)
        old, self.session, self.current = self.session, session, i
        log.info("connected to server {server} ({n} of {total})", server=self.servers[i].name,
                 n=i + 1, total=len(self.servers))
        self.on_session(session, self.servers[i])
        if old is not None and old is not session:
            _close_when_idle(old, self.clock)

    async def _serve(self) -> None:
        """Until the session is lost; meanwhile, away from the first server, try to go back."""
        while self.running and self.session is not None:
            session = self.session
            closed = session.when_closed()
            waits = [closed]
            if self.current and self.failback_interval > 0:
                waits.append(self._nap(self.failback_interval))
            await defer.DeferredList(waits, fireOnOneCallback=True, consumeErrors=True)
            for d in waits[1:]:
                if not d.called:
                    d.cancel()
            if not self.running:
                return
            if closed.called or not getattr(session, "is_connected", True):
                if self.session is session:
                    self.session = self.current = None
                    log.warn("lost the session with the server; trying the servers in order")
                return
            # Still connected to a later server: ask the earlier ones.
            if await self._round(range(self.current)) is None:
                continue

    def _nap(self, seconds: float) -> Deferred:
        return task.deferLater(self.clock, seconds)

    async def _pause(self, seconds: float) -> None:
        self._sleep = self._nap(seconds)
        try:
            await self._sleep
        except CancelledError:
            pass
        finally:
            self._sleep = None


def _close_when_idle(session, clock, *, wait: float = 30.0) -> None:
    """Close a replaced session once nothing is in flight on it (at most `wait` seconds)."""
    deadline = clock.seconds() + wait

    def check():
        busy = getattr(session, "in_flight", 0)
        if busy and clock.seconds() < deadline and getattr(session, "is_connected", False):
            clock.callLater(0.2, check)
            return
        session.close()

    check()


def _why(e: BaseException) -> str:
    if isinstance(e, defer.TimeoutError):
        return "no answer in time"
    message = getattr(e, "message", None)
    if isinstance(message, str) and message:
        return message
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
