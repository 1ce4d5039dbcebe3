"""What the soak watches while it runs: a clean tap (gaps, forgeries relayed, stale verdicts)
and the supervisor's RSS."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

import psutil

from protocol import Hello, ProtocolError, StateChange, decode
from protocol.messages import Notice
from protocol.sequence import stream_of
from protocol.topics import WELCOME

from ..tap import TapReader

#: pid carried by every forged message: one seen on the tap was relayed
FORGED_PID = 999_999


class CleanTap(TapReader):
    """A tap that always reads (no queue of its own fills), counting per-bot seq gaps."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint, name="clean-tap", hwm=0, reconnect_ms=50, poll_ms=100)
        self.welcomed = threading.Event()
        self.gaps: Counter[str] = Counter()
        self.relayed_forgeries = 0
        self.undecodable = 0
        self.messages = 0
        self.worker_pids: dict[str, set[int]] = defaultdict(set)
        #: pid -> monotonic time of its hello (a pid can come back: pid_max wraps)
        self.hello_at: dict[int, float] = {}
        #: (monotonic, bot, pid, reason) of every container judged unhealthy
        self.stale_verdicts: list[tuple[float, str, int, str]] = []
        self._expected: dict[Any, int] = {}
        #: (monotonic, bot, what, pid, seq) of every message relayed: the timeline a wrong
        #: verdict is explained with
        self.timeline: list[tuple[float, str, str, int, int]] = []
        self.started = time.monotonic()

    def on_frames(self, frames: list[bytes]) -> None:
        if frames == [WELCOME]:
            self.welcomed.set()
            return
        try:
            message = decode(frames[-1])
        except ProtocolError:
            self.undecodable += 1
            return
        with self.lock:
            self.messages += 1
            if getattr(message, "pid", 0) == FORGED_PID:
                self.relayed_forgeries += 1
                return
            self.timeline.append((time.monotonic(), message.bot, _what(message), message.pid, message.seq))
            if isinstance(message, Hello):
                self.worker_pids[message.bot].add(message.pid)
                self.hello_at[message.pid] = time.monotonic()
            if (isinstance(message, StateChange) and message.pid and message.reason
                    and message.reason.startswith("unhealthy")):  # the verdict itself (then: pid 0)
                self.stale_verdicts.append((time.monotonic(), message.bot, message.pid, message.reason))
            if isinstance(message, (StateChange, Notice)):
                return  # the supervisor's own streams: not worker seq
            key = stream_of(message)
            expected = self._expected.get(key, message.seq)
            if message.seq > expected:
                self.gaps[message.bot] += message.seq - expected
            self._expected[key] = max(expected, message.seq + 1)


def _what(message: Any) -> str:
    if isinstance(message, StateChange):
        return f"state {message.previous.value} -> {message.state.value} ({message.reason or ''})"
    return type(message).__name__.lower()


class RssSampler(threading.Thread):
    """The supervisor's RSS once a second: (seconds since start, bytes)."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True, name="rss")
        self.process = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopping.wait(self.every):
            try:
                self.samples.append((time.monotonic() - started, self.process.memory_info().rss))
            except psutil.Error:
                return

    def close(self) -> None:
        self.stopping.set()
        self.join(2)

    def profile(self, points: int = 10) -> list[tuple[float, float]]:
        """(seconds, MiB) at ``points`` even steps of the run: each the median of its step's samples."""
        if not self.samples:
            return []
        end = self.samples[-1][0]
        rows = []
        for i in range(points):
            lo, hi = end * i / points, end * (i + 1) / points
            window = sorted(rss for t, rss in self.samples if lo <= t <= hi)
            if window:
                rows.append((hi, window[len(window) // 2] / 2**20))
        return rows

    def halves(self) -> tuple[float, float, float]:
        """(MiB at the start of the second half, MiB at its end, MiB/min slope over it), from
        the medians of its first and last fifth (single samples jump with the allocator)."""
        second = [rss for _, rss in self.samples[len(self.samples) // 2:]]
        if len(second) < 5:
            return 0.0, 0.0, 0.0
        k = max(1, len(second) // 5)
        head, tail = sorted(second[:k])[k // 2], sorted(second[-k:])[k // 2]
        span = (self.samples[-1][0] - self.samples[len(self.samples) // 2][0]) / 60.0 or 1.0
        return head / 2**20, tail / 2**20, (tail - head) / 2**20 / span


class ProcSampler(threading.Thread):
    """Where each worker the clean tap has heard of spends its time: its /proc state ten times a
    second, recorded when it is not plain sleeping (S), with the kernel function it waits in for
    D (uninterruptible: disk I/O, the filesystem's journal). With the machine's I/O pressure
    (PSI), this is how a stale verdict on a worker nobody stopped is explained, or not."""

    def __init__(self, tap: CleanTap, every: float = 0.1) -> None:
        super().__init__(daemon=True, name="proc-states")
        self.tap = tap
        self.every = every
        #: (monotonic, pid, state, wchan) of every sample that was not S
        self.samples: list[tuple[float, int, str, str]] = []
        #: (monotonic, microseconds some task waited on I/O since boot) (/proc/pressure/io)
        self.io_pressure: list[tuple[float, int]] = []
        self.stopping = threading.Event()
        #: pid -> when it was found gone (sampled again once a newer hello comes from that pid)
        self._gone: dict[int, float] = {}

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            now = time.monotonic()
            with self.tap.lock:
                pids = [p for p, t in self.tap.hello_at.items() if self._gone.get(p, -1.0) < t]
            for pid in pids:
                state = _proc_state(pid)
                if state is None:
                    self._gone[pid] = now
                elif state != "S":
                    self.samples.append((now, pid, state, _read(f"/proc/{pid}/wchan") if state == "D" else ""))
            if (some := _io_some()) is not None:
                self.io_pressure.append((now, some))

    def close(self) -> None:
        self.stopping.set()
        self.join(2)

    def blocked(self, pid: int, start: float, end: float) -> float:
        """Seconds ``pid`` was seen in D (blocked in the kernel, uninterruptibly) within [start, end]."""
        return self.every * sum(1 for t, p, s, _ in self.samples if p == pid and s == "D" and start <= t <= end)

    def io_stalled(self, start: float, end: float) -> float:
        """Seconds some task on the machine waited on I/O within [start, end] (PSI io some)."""
        inside = [us for t, us in self.io_pressure if start <= t <= end]
        return (inside[-1] - inside[0]) / 1e6 if len(inside) > 1 else 0.0


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (None: gone or a zombie)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    state = stat[stat.rfind(")") + 2:][:1]
    return None if state in ("Z", "X", "") else state


def _io_some() -> int | None:
    for line in _read("/proc/pressure/io").splitlines():
        if line.startswith("some "):
            return int(line.rsplit("total=", 1)[1])
    return None
