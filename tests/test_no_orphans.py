"""Nothing leaks: workers die with the supervisor, stop with their process trees, and go together."""

from __future__ import annotations

import os
import signal
import time

import psutil

from protocol import ContainerState as S
from protocol import Event, EventType, Hello, StateChange

from .harness import alive, wait_until


def hellos(tap, n: int, timeout: float = 60) -> dict[str, Hello]:
    found: dict[str, Hello] = {}

    def collect(m) -> bool:
        if isinstance(m, Hello):
            found.setdefault(m.bot, m)
        return len(found) >= n

    tap.wait_for(collect, timeout=timeout, what=f"{n} hellos")
    return found


def test_sigkilling_the_supervisor_takes_every_worker_down_within_two_seconds(fleet_factory, launch):
    fleet = fleet_factory([f"b{i}" for i in range(5)])
    service, tap = launch(fleet)
    pids = {m.pid for m in hellos(tap, 5).values()}
    service.descendants()  # remember the forkserver and resource tracker too
    everything = set(service.known_pids) | pids
    os.kill(service.pid, signal.SIGKILL)
    service.wait(5)
    killed_at = time.monotonic()
    wait_until(lambda: not any(alive(p) for p in everything), timeout=5, what="every worker to die")
    assert time.monotonic() - killed_at < 2.0


def test_stopping_a_worker_stops_the_processes_it_started(fleet_factory, launch):
    fleet = fleet_factory([{"id": "parent", "simulated": {"spawn_child": True}}])
    service, tap = launch(fleet)
    hello = hellos(tap, 1)["parent"]
    tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "open", what="the bot online (its child started)")
    wait_until(lambda: psutil.Process(hello.pid).children(), timeout=5, what="the worker's child")
    child = psutil.Process(hello.pid).children()[0].pid
    service.known_pids.add(child)
    service.control("stop", {"bots": ["parent"]})
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.state is S.STOPPED, timeout=10, what="stopped")
    wait_until(lambda: not alive(child), timeout=5, what="the worker's child to be gone")


def test_fifty_workers_stop_in_parallel_within_stop_timeout_plus_one_second(fleet_factory, launch):
    fleet = fleet_factory([f"b{i:02d}" for i in range(50)], stop_timeout=2.0, heartbeat_interval=1.0)
    service, tap = launch(fleet)
    pids = {m.pid for m in hellos(tap, 50, timeout=90).values()}
    service.descendants()
    signalled = time.monotonic()
    service.signal(signal.SIGTERM)
    assert service.wait(timeout=30) == 0
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="all 50 workers to exit")
    took = time.monotonic() - signalled
    assert took < 2.0 + 1.0, f"50 workers took {took:.2f} s to stop"


def test_starts_are_staggered_by_start_interval(fleet_factory, launch):
    bots = [{"id": f"b{i}", "autostart": True} for i in range(4)]
    fleet = fleet_factory(bots, start_interval=0.3)
    service, tap = launch(fleet)
    # b0 starts as soon as the supervisor binds, perhaps before this tap is subscribed; the
    # later ones start start_interval apart, well after it
    later = [tap.wait_for(lambda m, b=b: isinstance(m, Hello) and m.bot == b, what=f"{b}'s hello")
             for b in ("b1", "b2", "b3")]
    ordered = sorted(later, key=lambda m: m.ts)
    assert [m.bot for m in ordered] == ["b1", "b2", "b3"]
    gaps = [b.ts - a.ts for a, b in zip(ordered, ordered[1:])]
    assert all(g >= 0.25 for g in gaps), gaps


def test_a_fleets_first_workers_say_hello_while_the_rest_are_still_forked(fleet_factory, launch):
    # start_interval 0: every start is due at once. Forked in one pass of the loop, no worker
    # could say hello before the last fork (ZeroMQ subscribes a new worker only when the
    # supervisor's thread comes back to the events socket): at 1,000 neonize bots, every hello
    # 10 s late. The loop forks in slices and handles what came in between.
    n = 80
    bots = [{"id": f"b{i}", "autostart": True} for i in range(n)]
    service, tap = launch(fleet_factory(bots, start_interval=0.0))
    last_started = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == f"b{n - 1}"
                                and m.state is S.INITIALIZING, timeout=60, what=f"b{n - 1} forked")
    before = tap.seen[:tap.seen.index(last_started)]
    running = [m.bot for m in before if isinstance(m, StateChange) and m.state is S.RUNNING]
    assert running, f"no worker was running (had said hello) before the last of {n} was forked"
    hellos(tap, n)
