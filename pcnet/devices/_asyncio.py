"""The one bridge between Twisted and asyncio libraries (pysnmp 7 is asyncio-only).

`AsyncioBridge(reactor).run(coroutine_function, *args)` runs the coroutine on an asyncio event
loop and gives a Deferred of its result, fired in the reactor thread. Two ways, chosen by the
reactor:

- under Twisted's asyncio reactor (`twistd --reactor=asyncio ...`), on the reactor's own loop:
  no thread, `Deferred.fromFuture`;
- under any other reactor (the default epoll one, which the server and the test suite run on),
  on a private loop in one daemon thread started on first use: results come back through
  `reactor.callFromThread`.

Either way the coroutine, and every asyncio object it makes, lives on that one loop only: the
caller gets plain Python values back, never a library's objects, so nothing asyncio-side is ever
touched from two threads. Cancelling the Deferred cancels the coroutine. `close()` stops the
private loop (after running `on_close` coroutines there, e.g. to close a library's sockets).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


def reactor_loop(reactor) -> asyncio.AbstractEventLoop | None:
    """The asyncio loop an asyncio reactor runs on, None for other reactors."""
    loop = getattr(reactor, "_asyncioEventloop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


class AsyncioBridge:
    def __init__(self, reactor):
        self._reactor = reactor
        self._shared = reactor_loop(reactor)
        self._loop: asyncio.AbstractEventLoop | None = self._shared
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        """"reactor loop" or "thread" (see the module doc)."""
        return "reactor loop" if self._shared is not None else "thread"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    ready = threading.Event()

                    def serve():
                        asyncio.set_event_loop(loop)
                        loop.call_soon(ready.set)
                        loop.run_forever()

                    self._thread = threading.Thread(target=serve, name="pcnet-asyncio",
                                                    daemon=True)
                    self._thread.start()
                    ready.wait(10)
                    self._loop = loop
        return self._loop

    def run(self, fn: Callable[..., Awaitable], *args) -> Deferred:
        """A Deferred of `await fn(*args)` on the loop (see the module doc)."""
        if self._shared is not None:
            return Deferred.fromFuture(asyncio.ensure_future(fn(*args), loop=self._shared))
        loop = self.loop
        future: concurrent.futures.Future = concurrent.futures.Future()
        task_box: list = []

        def start():
            # The coroutine is made here, on the loop, and only if nobody cancelled meanwhile:
            # a coroutine object made and never awaited would be a warning and a leak.
            if not future.set_running_or_notify_cancel():
                return
            task = loop.create_task(fn(*args))
            task_box.append(task)
            task.add_done_callback(lambda t: _settle(t, future))

        def cancel(_):
            if task_box:
                loop.call_soon_threadsafe(task_box[0].cancel)
            else:
                future.cancel()

        d = Deferred(cancel)

        def deliver(outcome):
            if d.called:  # cancelled meanwhile: the Deferred has its CancelledError already
                return
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

        def done(f):
            if f.cancelled():
                return
            exc = f.exception()
            outcome = Failure(exc, type(exc), exc.__traceback__) if exc is not None else f.result()
            self._reactor.callFromThread(deliver, outcome)

        future.add_done_callback(done)
        loop.call_soon_threadsafe(start)
        return d

    def close(self, on_close: Callable[[], Awaitable] | None = None, timeout: float = 5.0) -> None:
        """Stop the private loop's thread (nothing to do on the reactor's loop but `on_close`)."""
        if self._shared is not None:
            if on_close is not None:
                asyncio.ensure_future(on_close(), loop=self._shared)
            return
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        if on_close is not None:
            try:
                asyncio.run_coroutine_threadsafe(on_close(), loop).result(timeout)
            except Exception:
                pass  # closing is best effort: the thread goes away regardless
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


def _settle(task: asyncio.Task, future: concurrent.futures.Future) -> None:
    if task.cancelled():
        future.set_exception(asyncio.CancelledError())
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(task.result())
