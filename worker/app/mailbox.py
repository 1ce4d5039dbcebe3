"""Closures handed to another thread's loop: one wakeup per batch, sent when the poster is about to wait.

The worker's main loop and the app's loop hand each other work all the time: the events for the
app's handlers one way, the handlers' operations the other way, the operations' results back.
Every handover wakes the other thread, and a thread that is woken while its waker still runs
Python competes with it for the GIL: the loser waits up to a switch interval. So a mailbox:

- writes one wakeup byte per batch, not per closure (``_armed``: a byte is in the pipe, or held,
  and the reader has not drained yet);
- lets one thread, the ``holder``, hold its wakeup until it is about to wait itself (``flush``):
  the worker's main loop before it polls, the app's loop before it selects. The woken thread
  then finds its waker asleep instead of running beside it, and takes everything of one turn at
  once. A holder whose loop does not come round to waiting for ``HOLD_LIMIT`` flushes anyway
  (the app's loop asks at every turn), so a busy app cannot starve its operations.

The byte is written with ``os.write``, which releases the GIL for the system call. Writing it
with the GIL held (ctypes.PyDLL) was tried and measured worse (at 100 messages/s, load 35 to
48, p50 1.4 vs 1.0 ms and p99 3.8 to 5.1 vs 2.8 to 3.1 ms): under load the woken thread
preempts the writer inside the write, then finds the GIL taken and sleeps again.

Order: closures run in the order they were posted, by the reader, on the reader's thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Callable

#: seconds a holder may keep a wakeup while its own loop is still busy
HOLD_LIMIT = 0.0005


def _wake(fd: int) -> None:
    try:
        os.write(fd, b"\0")
    except BlockingIOError:
        pass  # the pipe is full of wakeups: the reader is due anyway


class Mailbox:
    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._queue: deque[Callable[[], None]] = deque()  # append/popleft are atomic: no lock
        self._armed = False
        self._closed = False
        self._held_since: float | None = None
        #: the thread whose posts hold their wakeup until it calls ``flush`` (None: nobody holds)
        self.holder: int | None = None

    @property
    def fd(self) -> int:
        """Readable when closures wait: the reader's loop polls it, then calls ``drain``."""
        return self._r

    def hold_for(self, thread_id: int | None) -> None:
        self.holder = thread_id

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the reader's thread (from any thread); dropped once closed (no reader)."""
        if self._closed:
            return
        self._queue.append(fn)
        if self.holder is not None and threading.get_ident() == self.holder:
            if not self._armed:
                self._held_since = time.monotonic()  # first: whoever sees _armed sees the hold too
                self._armed = True
            return
        if not self._armed or self._held_since is not None:  # nothing on its way, or only held: wake now
            self._held_since = None
            self._armed = True
            _wake(self._w)

    def flush(self, waiting: bool = True) -> None:
        """The holder is about to wait (``waiting``) or between two turns of a busy loop: send the
        held wakeup (when busy, only once it was held for HOLD_LIMIT)."""
        since = self._held_since
        if since is not None and (waiting or time.monotonic() - since >= HOLD_LIMIT):
            self._held_since = None
            _wake(self._w)

    def drain(self) -> None:
        """Run what was posted (on the reader's thread)."""
        try:
            while len(os.read(self._r, 4096)) == 4096:
                pass
        except BlockingIOError:
            pass
        self._armed = False  # before running: a closure posted from now on sends a new wakeup
        queue = self._queue
        while queue:
            queue.popleft()()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._r)
        os.close(self._w)
