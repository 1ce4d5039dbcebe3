"""How the chaos soak explains a stale verdict on a worker its driver never stopped (issue 14):
from the states the worker was sampled in while it was quiet, never by letting it pass."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from bench.chaos import checks as c
from bench.chaos.actions import Record
from bench.chaos.fleet import HEARTBEAT, TIMEOUT
from bench.chaos.observe import CleanTap, ProcSampler


@pytest.fixture
def tap(tmp_path):
    tap = CleanTap(f"ipc://{tmp_path / 'tap.sock'}")  # never started: the test feeds it
    yield tap
    tap.socket.close(0)
    tap.context.term()


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait(5)


def heard(tap: CleanTap, bot: str, pid: int, at: float) -> None:
    tap.worker_pids[bot].add(pid)
    tap.hello_at[pid] = at
    tap.timeline.append((at, bot, "hello", pid, 0))


def test_a_worker_stopped_by_someone_else_is_sampled_in_T_and_its_verdict_fails_the_check(tap, sleeper):
    started = time.monotonic()
    heard(tap, "b1", sleeper.pid, started)
    sleeper.send_signal(signal.SIGSTOP)
    procs = ProcSampler(tap, every=0.02)
    procs.start()
    try:
        deadline = time.monotonic() + 5
        while not any(p == sleeper.pid and s == "T" for _, p, s, _ in procs.samples) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        procs.close()
    assert any(p == sleeper.pid and s == "T" for _, p, s, _ in procs.samples)
    tap.stale_verdicts.append((time.monotonic(), "b1", sleeper.pid, "unhealthy: no heartbeat for 2.0 s"))

    record = Record()
    [verdict] = c.stale_verdicts(record, tap, procs)
    assert verdict.blocked == 0 and not verdict.on_disk
    check = c.saturation_checks(record, tap, procs)[0]
    assert not check.ok and f"pid {sleeper.pid}" in check.figure
    lines = c.timeline(record, tap, procs, "b1", verdict.at)
    assert any(f"pid {sleeper.pid} in T" in line for line in lines)

    record.stopped.add(sleeper.pid)  # the driver's own SIGSTOP: that verdict is right
    assert c.stale_verdicts(record, tap, procs) == []
    assert c.saturation_checks(record, tap, procs)[0].ok


def test_only_a_worker_blocked_on_the_disk_for_its_whole_quiet_time_is_explained(tap):
    procs = ProcSampler(tap, every=0.1)  # fed below, as its thread would have
    hello = 100.0
    heard(tap, "b1", 41, hello)
    verdict_at = hello + TIMEOUT
    tap.stale_verdicts.append((verdict_at, "b1", 41, "unhealthy: no heartbeat for 2.0 s"))
    blocked = int((TIMEOUT - HEARTBEAT) / procs.every)  # all but one heartbeat interval of it
    procs.samples += [(hello + 0.05 + i * procs.every, 41, "D", "jbd2_log_wait_commit") for i in range(blocked)]
    record = Record()
    [verdict] = c.stale_verdicts(record, tap, procs)
    assert verdict.quiet == pytest.approx(TIMEOUT) and verdict.on_disk
    check = c.saturation_checks(record, tap, procs)[0]
    assert check.ok and "1 blocked on the disk" in check.figure

    procs.samples.pop()  # one sample short: it could have beaten, so nothing explains it
    [verdict] = c.stale_verdicts(record, tap, procs)
    assert not verdict.on_disk
    assert not c.saturation_checks(record, tap, procs)[0].ok

    procs.samples[:] = [(t, p, "R", "") for t, p, _, _ in procs.samples]  # runnable: the CPU, not the disk
    assert not c.saturation_checks(record, tap, procs)[0].ok
