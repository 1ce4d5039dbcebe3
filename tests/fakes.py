"""Fakes for testing containers without processes: a runtime, a clock, a worker process."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Callable

from protocol import ContainerState
from supervisor.timers import Timer, Timers


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProcess:
    pid: int
    sentinel: int
    signals: list[int] = field(default_factory=list)
    closed: bool = False

    def signal_tree(self, sig: int) -> None:
        self.signals.append(sig)

    def resources(self) -> tuple[int, float]:
        return 12 * 1024 * 1024, 1.5

    def close(self) -> None:
        self.closed = True


class FakeRuntime:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.timers = Timers(clock)
        self.spawned: list[FakeProcess] = []
        self.states: list[tuple[str, ContainerState, ContainerState, str | None]] = []
        self.watched: set[int] = set()
        #: exceptions the next spawns raise, in order (e.g. a dead forkserver's refusal)
        self.spawn_errors: list[Exception] = []

    def spawn(self, container) -> FakeProcess:
        if self.spawn_errors:
            raise self.spawn_errors.pop(0)
        process = FakeProcess(pid=5000 + len(self.spawned), sentinel=100 + len(self.spawned))
        self.spawned.append(process)
        return process

    def watch(self, container) -> None:
        self.watched.add(container.process.sentinel)

    def unwatch(self, container) -> None:
        self.watched.discard(container.process.sentinel)

    def publish_state(self, container, previous: ContainerState) -> None:
        self.states.append((container.bot.id, previous, container.state, container.reason))

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.timers.call_later(delay, callback)

    def run_timers(self) -> None:
        self.timers.run_due()


SIGTERM, SIGKILL = signal.SIGTERM, signal.SIGKILL
