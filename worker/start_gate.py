"""The fleet's start gate: at most ``slots`` workers load a heavy backend at the same time.

A neonize worker's start is heavy: importing neonize loads the Go library and starts its
runtime (0.21-0.30 CPU-s here; the first dial after it 0.01-0.02: bench/neonize_start.py).
At a fleet's start, 1,000 of them loading at once compete with each other and with the forks
still to come, so the last workers' hellos wait behind everyone's Go runtime, and every load
runs slower for the cache and memory it fights over (bench/ISSUE18-notes.md, §6-7). Behind the
gate the cheap part (fork, hello, heartbeats) is done for the whole fleet first, and the loads
follow ``slots`` at a time, each at full speed.

A slot is a file in the supervisor's run dir held with ``flock``: the kernel lets go of it when
its worker ends, however it ends, so a slot is never lost to a crash or a SIGKILL, and no
process has to hand slots out. A worker takes any free slot at once; with none free it waits
for one (``crc32(bot id) % slots``, so waiters spread over the slots) on a thread, while its
main thread keeps sending heartbeats (a waiting worker is alive, not stale) and still ends
on SIGTERM or when its supervisor does (worker/main.py). The slot is given back as soon as the
backend is loaded and its first dial started: the dial waits on the network, not the CPU, and
holding the slot through it would make a fleet's start as slow as its slowest DNS answers.

At a fleet's start the supervisor itself holds every slot (``FleetHold``) until each heavy
worker has said hello (or a deadline passes): otherwise the first workers load while the rest
are still being forked, and with one load per CPU the loads take every core from the hellos
still to come (1,000 neonize bots: the last hello 7.5 s after the last fork; notes §8).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import threading
import zlib
from pathlib import Path

#: the directory of slot files inside run_dir
DIRECTORY = "start-gate"
#: the backends whose start takes real CPU (importing neonize loads the Go library and starts
#: its runtime: 0.21-0.30 CPU-s, the first dial 0.01-0.02; bench/neonize_start.py), so a
#: fleet's workers take turns at it behind this gate; named here, not on the backend's class,
#: because importing the class is the heavy part (and the supervisor reads it too)
HEAVY_START = frozenset({"neonize"})


@functools.cache
def default_slots() -> int:
    """One load at a time per CPU the supervisor may run on (asked once, not at every spawn)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _open_slot(directory: Path, i: int) -> int:
    return os.open(directory / f"slot-{i}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class StartGate:
    """This worker's view of the slots (opened before the worker drops to its bot's user)."""

    def __init__(self, directory: Path, slots: int, bot_id: str) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        self.fds = [_open_slot(directory, i) for i in range(slots)]
        self.preferred = zlib.crc32(bot_id.encode()) % slots
        self.held: int | None = None
        self._ready_r: int | None = None
        self._ready_w: int | None = None

    def try_take(self) -> bool:
        """Take a free slot without waiting (the preferred one first)."""
        order = self.fds[self.preferred:] + self.fds[:self.preferred]
        for fd in order:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    continue
                raise
            self.held = fd
            return True
        return False

    def wait_fd(self) -> int:
        """Start waiting for the preferred slot on a thread; the fd returned becomes readable once
        it is held (and the thread is done)."""
        self._ready_r, self._ready_w = os.pipe2(os.O_CLOEXEC)
        fd = self.fds[self.preferred]

        def wait() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.held = fd
            os.write(self._ready_w, b"!")  # type: ignore[arg-type]

        # a daemon thread: a worker told to stop while it waits ends without it
        threading.Thread(target=wait, name="start-gate", daemon=True).start()
        return self._ready_r

    def release(self) -> None:
        """Give the slot back and close every slot file (a worker takes a slot once per life).
        Called only once a slot is held: a worker stopped while it waits just exits."""
        if self.held is not None:
            fcntl.flock(self.held, fcntl.LOCK_UN)
            self.held = None
        for fd in [*self.fds, self._ready_r, self._ready_w]:
            if fd is not None:
                os.close(fd)
        self.fds, self._ready_r, self._ready_w = [], None, None


class FleetHold:
    """The supervisor's hold on every slot while its fleet starts (see the module docstring).
    A slot it cannot take at once (a worker of a run before holds it) is left alone."""

    def __init__(self, directory: Path, slots: int) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        self.fds: list[int] = []
        for i in range(slots):
            fd = _open_slot(directory, i)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.fds.append(fd)

    def release(self) -> None:
        """Let the waiting workers in (the kernel hands each slot to one of its waiters)."""
        for fd in self.fds:
            os.close(fd)  # closing the only fd of the open file lets go of its lock
        self.fds = []
