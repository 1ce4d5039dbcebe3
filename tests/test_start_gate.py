"""The fleet's start gate (worker/start_gate.py): heavy backends load a few at a time.

The unit half holds slots from another real process (flock is per open file, so a holder in
this process would do too, but a SIGKILLed holder is the case that matters). The neonize half
runs the real backend with the one slot held by another process (another heavy start under
way): the workers must wait for it, heartbeating, and load once it is free.
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
from protocol.client import ControlError
from worker.start_gate import FleetHold, StartGate

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


def test_the_fleets_hold_keeps_every_slot_until_released_and_a_waiter_then_gets_one(tmp_path):
    gate_dir = tmp_path / "gate"
    hold_ = FleetHold(gate_dir, 2)
    worker = StartGate(gate_dir, 2, "a")
    assert not worker.try_take(), "the supervisor holds both slots while its fleet starts"
    ready = worker.wait_fd()
    assert not readable(ready, 0.3)
    hold_.release()
    assert readable(ready, 5), "released: the waiting worker gets its slot"
    worker.release()

    holder = hold([gate_dir / "slot-1"])  # a worker of an earlier run still loading
    try:
        partial = FleetHold(gate_dir, 2)
        assert len(partial.fds) == 1, "a slot another holds is left alone, not waited for"
        partial.release()
    finally:
        holder.kill()
        holder.wait(5)


@pytest.mark.slow
def test_at_a_fleets_start_no_neonize_worker_loads_before_every_one_has_said_hello(
        fleet_factory, launch, silent_proxy):  # noqa: F811 - the fixture
    # three heavy bots for one slot, started with the supervisor a second apart: without the
    # hold the first loads neonize and dials while the third is not even forked
    bots = [{**neonize_bot(silent_proxy.port, id=f"n{i}"), "autostart": True} for i in (1, 2, 3)]
    fleet = fleet_factory(bots, start_concurrency=1, start_interval=1.0)
    service, tap = launch(fleet)
    for i in (1, 2, 3):  # each loads in the end, one at a time
        _first(tap, lambda m, bot=f"n{i}": _connecting(m) and m.bot == bot, 60, f"n{i} loading")
    log = (fleet.root / "supervisor.log").read_text()
    assert "start gate open: 3 heavy worker(s) started, every one said hello" in log
    last_hello = max(_logged_at(line) for line in log.splitlines() if "running (worker said hello)" in line)
    loads = [e["timestamp"] for b in ("n1", "n2", "n3") for e in service.control("history", {"bot": b})["events"]
             if e["type"] == EventType.CONNECTION_UPDATE.value and e["data"].get("connection") == "connecting"]
    assert len(loads) >= 3 and min(loads) > last_hello, \
        f"a worker loaded neonize at {min(loads)}, before the last hello at {last_hello}"


def _logged_at(line: str) -> float:
    """The wall-clock time a supervisor.log line begins with (``2026-12-02T15:59:49.774Z``)."""
    from datetime import datetime, timezone

    stamp = line.split(" ", 1)[0].rstrip("Z")
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def _first(tap, predicate, timeout, what):
    return tap.wait_for(predicate, timeout=timeout, what=what)


def _connecting(m, pid=None) -> bool:
    return (isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE and m.data.connection == "connecting"
            and (pid is None or m.pid == pid))


@pytest.mark.slow
def test_neonize_workers_wait_for_a_slot_heartbeating_stop_cleanly_while_waiting_and_load_once_it_is_free(
        fleet_factory, launch, silent_proxy):  # noqa: F811 - the fixture
    bots = [neonize_bot(silent_proxy.port, id="n1"), neonize_bot(silent_proxy.port, id="n2")]
    # heartbeats judged after 1 s: a waiting worker that stopped heartbeating would be replaced
    fleet = fleet_factory(bots, start_concurrency=1, heartbeat_timeout=1.0, backoff={"initial": 0.1, "jitter": 0.0})
    gate_dir = fleet.run_dir / "start-gate"
    gate_dir.mkdir(parents=True, mode=0o700)
    holder = hold([gate_dir / "slot-0"])  # another heavy start under way: the one slot is taken
    try:
        service, tap = launch(fleet)
        hellos = {}
        for _ in range(2):
            m = _first(tap, lambda m: isinstance(m, Hello) and m.bot not in hellos, 20, "both hellos")
            hellos[m.bot] = m.pid

        # a measuring window, not a synchronisation: while the slot is held nobody loads neonize
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            tap.read(0.1)
        assert not [m for m in tap.seen if _connecting(m)], "a worker loaded neonize without a slot"
        for bot, pid in hellos.items():
            beats = sum(1 for m in tap.seen if isinstance(m, Heartbeat) and m.pid == pid)
            assert beats >= 5, f"{bot} waiting heartbeats (status loading): {beats} in 3 s at 0.2 s"
        unhealthy = [m.reason for m in tap.seen if isinstance(m, StateChange) and "unhealthy" in (m.reason or "")]
        assert not unhealthy, f"a waiting worker was judged stale (or the first one, whose spawn waited for the " \
                              f"forkserver): {unhealthy}"
        assert "waiting for a start slot (1 workers load at once)" in (fleet.root / "supervisor.log").read_text()

        # a command meanwhile is answered at once, not run minutes later after the caller gave up
        asked = time.monotonic()
        with pytest.raises(ControlError, match="waits for its turn to load neonize"):
            service.control("send", {"bot": "n1", "to": "15550001111@s.whatsapp.net", "text": "hi"})
        assert time.monotonic() - asked < 5.0, "answered by the waiting worker, not by the command timeout"

        asked = time.monotonic()  # a worker told to stop while it waits ends at once, cleanly
        service.control("stop", {"bots": ["n2"]})
        stopped = _first(tap, lambda m: isinstance(m, StateChange) and m.bot == "n2"
                         and m.state is ContainerState.STOPPED, 10, "n2 stopped")
        assert stopped.last_exit == "exit 0 (ok)" and time.monotonic() - asked < 2.0, stopped

        holder.send_signal(signal.SIGKILL)  # the other start is over (however it ended): n1's turn
        holder.wait(5)
        _first(tap, lambda m: _connecting(m, hellos["n1"]), 30, "n1 loading once the slot is free")
        service.control("start", {"bots": ["n2"]})  # and a start with the slot free does not wait
        again = _first(tap, lambda m: isinstance(m, Hello) and m.bot == "n2" and m.pid != hellos["n2"], 20,
                       "n2's new worker")
        _first(tap, lambda m: _connecting(m, again.pid), 30, "n2 loading")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(5)
