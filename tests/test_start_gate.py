"""The fleet's start gate (worker/start_gate.py): heavy backends load a few at a time.

The unit half holds slots from another real process (flock is per open file, so a holder in
this process would do too, but a SIGKILLed holder is the case that matters). The neonize half
runs the real backend behind a silent proxy: a dial through it hangs, so the first worker keeps
its slot and the second must wait, heartbeating, until the first is gone.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol import ContainerState, Event, EventType, Heartbeat, Hello, StateChange
from worker.start_gate import StartGate

from .test_neonize_worker import neonize_bot, silent_proxy  # noqa: F401 - the fixture

HOLDER = """
import fcntl, os, sys, time
fds = [os.open(p, os.O_RDWR | os.O_CREAT) for p in sys.argv[1:]]
for fd in fds:
    fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def hold(paths: list[Path]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, paths)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_a_free_slot_is_taken_at_once_and_a_waiter_gets_one_when_its_holder_is_killed(tmp_path):
    gate_dir = tmp_path / "gate"
    first = StartGate(gate_dir, 2, "a")
    assert first.try_take(), "two free slots: the first worker takes one without waiting"
    second = StartGate(gate_dir, 2, "b")
    assert second.try_take(), "one free slot left"
    third = StartGate(gate_dir, 2, "c")
    assert not third.try_take(), "both slots are held"
    first.release()
    assert third.try_take(), "a released slot is free again"
    second.release()
    third.release()

    holder = hold([gate_dir / "slot-0", gate_dir / "slot-1"])
    try:
        waiter = StartGate(gate_dir, 2, "d")
        assert not waiter.try_take()
        ready = waiter.wait_fd()
        assert not readable(ready, 0.3), "nothing is free while the holder lives"
        holder.send_signal(signal.SIGKILL)  # however a worker ends, the kernel lets its slot go
        holder.wait(5)
        assert readable(ready, 5), "the holder's death must free its slot for the waiter"
        waiter.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(5)


def _first(tap, predicate, timeout, what):
    return tap.wait_for(predicate, timeout=timeout, what=what)


def _connecting(m, pid=None) -> bool:
    return (isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE and m.data.connection == "connecting"
            and (pid is None or m.pid == pid))


@pytest.mark.slow
def test_with_one_slot_the_second_neonize_worker_waits_heartbeating_stops_cleanly_and_loads_when_the_first_dies(
        fleet_factory, launch, silent_proxy):  # noqa: F811 - the fixture
    bots = [neonize_bot(silent_proxy.port, id="n1"), neonize_bot(silent_proxy.port, id="n2")]
    # heartbeats judged after 1 s: a waiting worker that stopped heartbeating would be replaced
    fleet = fleet_factory(bots, start_concurrency=1, heartbeat_timeout=1.0, backoff={"initial": 0.1, "jitter": 0.0})
    service, tap = launch(fleet)
    hellos = {}
    for _ in range(2):
        m = _first(tap, lambda m: isinstance(m, Hello) and m.bot not in hellos, 20, "both hellos")
        hellos[m.bot] = m.pid
    loading = _first(tap, _connecting, 30, "one worker dialling")
    holder = loading.bot
    waiter = "n2" if holder == "n1" else "n1"
    waiter_pid = hellos[waiter]

    # the window (a measuring window, not a synchronisation): the dial through the silent proxy
    # hangs, so the holder keeps the slot (up to HOLD_MAX, 10 s) and the waiter must not load
    beats_before = sum(1 for m in tap.seen if isinstance(m, Heartbeat) and m.pid == waiter_pid)
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        tap.read(0.1)
    beats = sum(1 for m in tap.seen if isinstance(m, Heartbeat) and m.pid == waiter_pid) - beats_before
    assert not [m for m in tap.seen if _connecting(m, waiter_pid)], "the waiter loaded neonize beside the holder"
    assert beats >= 5, f"a waiting worker heartbeats (status loading): {beats} in 3 s at 0.2 s"
    assert not [m for m in tap.seen if isinstance(m, StateChange) and m.bot == waiter
                and m.state is not ContainerState.RUNNING and m.state is not ContainerState.INITIALIZING], \
        "the waiting worker was judged stale or restarted"
    assert "waiting for a start slot (1 workers load at once)" in (fleet.root / "supervisor.log").read_text()
    unhealthy = [m.reason for m in tap.seen if isinstance(m, StateChange) and "unhealthy" in (m.reason or "")]
    assert not unhealthy, f"a worker was judged stale (the first spawn waits for the forkserver): {unhealthy}"

    asked = time.monotonic()  # a worker told to stop while it waits ends at once, cleanly
    service.control("stop", {"bots": [waiter]})
    stopped = _first(tap, lambda m: isinstance(m, StateChange) and m.bot == waiter
                     and m.state is ContainerState.STOPPED, 10, "the waiter stopped")
    assert stopped.last_exit == "exit 0 (ok)" and time.monotonic() - asked < 2.0, stopped
    service.control("start", {"bots": [waiter]})
    again = _first(tap, lambda m: isinstance(m, Hello) and m.bot == waiter and m.pid != waiter_pid, 20,
                   "the waiter's new worker")

    os.kill(loading.pid, signal.SIGKILL)  # the holder dies mid-dial: the slot goes to the one waiting for it
    _first(tap, lambda m: _connecting(m, again.pid), 30, "the waiter's worker loading once the holder died")
