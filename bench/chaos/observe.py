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
        #: (monotonic, bot, pid, reason) of every container judged unhealthy
        self.stale_verdicts: list[tuple[float, str, int, str]] = []
        self._expected: dict[Any, int] = {}
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
            if isinstance(message, Hello):
                self.worker_pids[message.bot].add(message.pid)
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
