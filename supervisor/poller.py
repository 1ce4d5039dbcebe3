"""The supervisor loop's readiness poller: one epoll set, registered once.

``zmq.Poller`` rebuilds its whole poll set on every call, so with one exit sentinel per
worker each wakeup cost O(fleet): at 200 bots with 1 s heartbeats that alone was most of
the supervisor's idle CPU (bench/RESULTS.md). Here every fd is registered with the kernel
once and a wakeup costs O(ready).

ZeroMQ sockets take part through their ``zmq.FD``, which only says "look at me": it wakes
epoll when the socket's state may have changed, and is reset by any operation on the
socket. So the authority is ``zmq.EVENTS``, checked for every zmq socket (a handful) on
every pass, before sleeping and after waking; a socket with input already queued makes the
wait non-blocking. This is the pattern the libzmq documentation prescribes for ZMQ_FD.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import zmq

#: plain ints: the zmq constants are IntFlag members, and each ``&`` on them builds a new one
POLLIN = int(zmq.POLLIN)
EVENTS = int(zmq.EVENTS)
NOBLOCK = int(zmq.NOBLOCK)
#: messages read from one socket per loop pass, so one busy socket cannot starve the others
BATCH = 2000
#: messages of a pass read after a ``zmq.EVENTS`` look each (see queued)
SPARSE = 4


@dataclass
class Ready:
    """What one pass found: zmq sockets with input queued, and plain fds that are readable."""

    sockets: list[zmq.Socket] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


class Poller:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._sockets: list[zmq.Socket] = []
        self._socket_fds: set[int] = set()
        self._fd_of: dict[zmq.Socket, int] = {}
        self._drained: set[zmq.Socket] = set()
        self._held: dict[zmq.Socket, float] = {}  # socket -> time.monotonic() its hold ends
        self._released: set[zmq.Socket] = set()  # held until the latest poll

    def add_socket(self, sock: zmq.Socket) -> None:
        """Watch a zmq socket for input."""
        fd = sock.getsockopt(zmq.FD)
        self._epoll.register(fd, select.EPOLLIN)
        self._sockets.append(sock)
        self._socket_fds.add(fd)
        self._fd_of[sock] = fd

    def add_fd(self, fd: int) -> None:
        """Watch a plain fd (a pipe, a socketpair end, a process sentinel) until it is readable."""
        self._epoll.register(fd, select.EPOLLIN)

    def remove_fd(self, fd: int) -> None:
        """Stop watching ``fd``; call it before the fd is closed, or its number may be reused."""
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # already closed: the kernel dropped it from the set with its last reference

    def poll(self, timeout: float) -> Ready:
        """Wait up to ``timeout`` seconds for input; never waits while a zmq socket has some
        (other than a held one, see hold)."""
        drained, self._drained = self._drained, set()
        self._released.clear()
        if self._held:
            timeout = self._release_held(timeout, drained)
        held = self._held
        ready = Ready(sockets=self._with_input([s for s in self._sockets if s not in drained and s not in held]))
        events = self._epoll.poll(0 if ready.sockets else timeout)
        ready.fds = [fd for fd, _ in events if fd not in self._socket_fds]
        if not ready.sockets and len(ready.fds) < len(events):
            # a zmq fd woke us: only its socket can have input since the look above (each look
            # is a syscall in libzmq, and a heartbeat's wakeup made eight of them)
            woke = {fd for fd, _ in events if fd in self._socket_fds}
            ready.sockets = self._with_input([s for s in self._sockets if self._fd_of[s] in woke])
        return ready

    def drained(self, sock: zmq.Socket) -> None:
        """``sock`` was just read until it had no input, and nothing touched it since: the next
        poll need not look at it before waiting (new input will wake its fd). Good for the
        next poll only: a handler marks it again after each drain."""
        self._drained.add(sock)

    def hold(self, sock: zmq.Socket, seconds: float) -> None:
        """Leave ``sock`` out of the polls for ``seconds``: its input waits, queued by ZeroMQ,
        and is found by the first poll after (see supervisor/relay.py: a quiet fleet's
        heartbeats, taken a beat group at a time). Out of the epoll set too: its fd is
        level-triggered and stays readable until the socket is touched. Other sockets and fds
        are watched as always."""
        if sock not in self._held:
            self._epoll.modify(self._fd_of[sock], 0)
            self._held[sock] = time.monotonic() + seconds

    def held(self, sock: zmq.Socket) -> bool:
        return sock in self._held

    def release(self, sock: zmq.Socket) -> None:
        """End ``sock``'s hold now (if held): the next poll looks at it."""
        if self._held.pop(sock, None) is not None:
            self._epoll.modify(self._fd_of[sock], select.EPOLLIN)

    def released(self, sock: zmq.Socket) -> bool:
        """True when ``sock``'s hold ended in the latest poll."""
        return sock in self._released

    def _release_held(self, timeout: float, drained: set[zmq.Socket]) -> float:
        """Put back the sockets whose hold is over; the poll's timeout, cut to the next end."""
        now = time.monotonic()
        for sock, until in list(self._held.items()):
            if until <= now:
                del self._held[sock]
                self._released.add(sock)
                drained.discard(sock)  # looked at in this poll: input may have come meanwhile
                self._epoll.modify(self._fd_of[sock], select.EPOLLIN)
            else:
                timeout = min(timeout, until - now)
        return timeout

    def _with_input(self, sockets: list[zmq.Socket]) -> list[zmq.Socket]:
        return [sock for sock in sockets if sock.get(EVENTS) & POLLIN]

    def close(self) -> None:
        self._epoll.close()


def queued(sock: zmq.Socket, limit: int = BATCH) -> Iterator[list[bytes]]:
    """The messages already queued on ``sock``, at most ``limit`` (so one busy socket cannot
    starve the others), read without waiting.

    Measured per 3-frame message: pyzmq's ``getsockopt`` converts its option to an Enum on
    every call, so asking ``zmq.EVENTS`` before each message and ``zmq.RCVMORE`` after each
    frame cost 5.3 µs, ``recv_multipart`` 3.8 µs, frames with their ``more`` flag 2.1 µs; a
    ``zmq.Again`` that ends a drain costs more than a message. So the first few messages of a
    pass (a lone heartbeat, sparse traffic) are each followed by a ``zmq.EVENTS`` look and never
    meet ``zmq.Again``; a dense pass reads on until the queue is empty and pays one ``Again``.
    Called when the poller has seen input on ``sock`` (without any, it returns at once)."""
    get, recv = sock.get, sock.recv
    for i in range(limit):
        # not before the first: the poller has just seen input (and a look is a syscall)
        if 0 < i < SPARSE and not get(EVENTS) & POLLIN:
            return
        try:
            frame = recv(NOBLOCK, copy=False)
            frames = [frame.bytes]
            while frame.more:
                frame = recv(NOBLOCK, copy=False)
                frames.append(frame.bytes)
        except zmq.Again:
            return
        yield frames
