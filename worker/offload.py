"""Network calls off the worker's main loop: one I/O thread per worker, results back on the loop.

The loop sends the heartbeats (docs/supervision.md), so it must never wait for the network: a
50 MB upload or a slow usync query would stop the heartbeats and get a healthy bot killed as
hung. An operation that needs the network hands the call to ``IoLane.run`` and returns the
``Pending`` it gets; the call runs on the lane's thread, and its outcome is handed back through
a queue and the lane's wakeup pipe, which the loop polls. ``IoLane.drain`` (on the loop) then
resolves the Pending, so everything that follows a call (the command's reply, the outbox's
state change, the echoed message-upsert) happens on the loop, as before.

One thread, first in first out: calls run in the order the loop made them, so per-chat order
holds and the outbox, which starts a send only when the one before it has finished, keeps its
strict order. (whatsmeow's client is safe for concurrent sends, but a lookup that waits behind
an upload is a smaller price than reordered messages.)
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from typing import Any, Callable

log = logging.getLogger("botvisor.worker.offload")


class Pending:
    """A result that comes later, on the loop: an operation's reply, a send's attempt.

    Not thread-safe on purpose: it is resolved and read on the loop's thread only (the lane's
    thread hands outcomes over through ``IoLane.drain``). ``then`` chains plain functions run on
    the loop; an exception skips them and reaches whoever reads the result."""

    __slots__ = ("_done", "_value", "_error", "_callbacks")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Pending], None]] = []

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        """The value, or the exception raised; only once ``done()``."""
        assert self._done, "Pending.result() before it is done"
        if self._error is not None:
            raise self._error
        return self._value

    def outcome(self) -> tuple[Any, BaseException | None]:
        """(value, None) or (None, exception), without raising; only once ``done()``."""
        assert self._done, "Pending.outcome() before it is done"
        return self._value, self._error

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        assert not self._done, "a Pending is resolved once"
        self._done, self._value, self._error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def on_done(self, callback: Callable[[Pending], None]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def then(self, fn: Callable[[Any], Any], on_error: Callable[[BaseException], Any] | None = None) -> Pending:
        """A Pending of ``fn(value)`` (or ``on_error(exception)``, when given), run on the loop once
        this one is done; without ``on_error`` an exception skips ``fn`` and reaches the reader.
        ``fn`` may itself return a Pending: the chain waits for it."""
        chained = Pending()

        def step(done: Pending) -> None:
            value, error = done.outcome()
            try:
                if error is None:
                    value = fn(value)
                elif on_error is not None:
                    value = on_error(error)
                else:
                    raise error
            except BaseException as exc:  # noqa: BLE001 - handed to the reader of the chain
                chained.resolve(error=exc)
                return
            settle(chained, value)

        self.on_done(step)
        return chained


def settle(target: Pending, value: Any) -> None:
    """Resolve ``target`` with ``value``, or with ``value``'s outcome when that is a Pending."""
    if isinstance(value, Pending):
        value.on_done(lambda done: target.resolve(*done.outcome()))
    else:
        target.resolve(value)


def when_done(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(value)`` now for a plain value; chained on the loop for a Pending."""
    return value.then(fn) if isinstance(value, Pending) else fn(value)


class IoLane:
    """One daemon thread that runs the calls the loop hands it, in order."""

    def __init__(self, name: str = "botvisor-io") -> None:
        self.name = name
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._jobs: queue.SimpleQueue[tuple[Pending, Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None] = \
            queue.SimpleQueue()
        self._finished: deque[tuple[Pending, Any, BaseException | None]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: calls handed over and not yet drained (in flight or waiting)
        self.busy = 0

    @property
    def fd(self) -> int:
        """Readable when a call has finished: the loop polls it, then calls ``drain``."""
        return self._r

    # -- the loop's side ---------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Pending:
        """``fn(*args, **kwargs)`` on the lane's thread; the Pending is resolved on the loop by ``drain``."""
        if self._closed:
            raise RuntimeError("the I/O lane is closed")
        if self._thread is None:  # started on first use: a backend that never calls out has no thread
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        pending = Pending()
        self.busy += 1
        self._jobs.put((pending, fn, args, kwargs))
        return pending

    def drain(self) -> int:
        """Resolve the Pendings of the calls that finished (their callbacks run here, on the loop)."""
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        count = 0
        while self._finished:
            pending, value, error = self._finished.popleft()
            self.busy -= 1
            count += 1
            pending.resolve(value, error)
        return count

    def wait(self, pending: Pending, timeout: float) -> Any:
        """Drive the lane until ``pending`` is done and return its result: for callers without a
        worker loop (tools, tests). The worker's loop never calls this."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while not pending.done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the call did not finish within {timeout:g} s")
            select.select([self._r], [], [], left)
            self.drain()
        return pending.result()

    def close(self) -> None:
        """Let the thread end after the call it is in (a Go call cannot be interrupted; the
        thread is a daemon, so it never holds the process)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)

    # -- the lane's thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            pending, fn, args, kwargs = job
            value, error = None, None
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the loop
                error = exc
            self._finished.append((pending, value, error))  # deque.append is atomic
            try:
                os.write(self._w, b"!")
            except BlockingIOError:
                pass  # the pipe is full of wakeups: the loop is awake already
