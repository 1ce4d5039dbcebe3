"""The supervision scenarios, the same code for every Subject: times in seconds, bounded waits.

Replacement pids are seen by polling /proc every 2 ms (so times are accurate to ~2 ms);
botvisor's hellos are stamped by the tap thread as they arrive.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from typing import Any

import psutil

from .procs import BenchTimeout, alive, wait_until
from .subjects import Botvisor, Subject

#: shortest and longest random wait between two kills of the crash scenario
CRASH_WAIT = (0.25, 0.5)
#: a replacement slower than this is recorded as missing
REPLACE_TIMEOUT = 15.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cold_start(subject: Subject, timeout: float) -> dict[str, Any]:
    """Start the daemon; time until every worker pid exists and (botvisor) every hello arrived."""
    subject.start()
    t0, n = subject.started_at, subject.n

    def all_pids() -> bool:
        subject.check_running()
        # counting children reads two small files; telling live from dead reads one per worker,
        # which at N = 1,000 every 2 ms took a third of a core from the fleet being timed
        # (perf, bench/ISSUE18-notes.md §10): only once the count is there
        return len(subject.worker_pids()) >= n and len(subject.live_workers()) >= n

    result: dict[str, Any] = {"all_pids": wait_until(all_pids, timeout, f"{n} {subject.name} workers") - t0}
    if isinstance(subject, Botvisor):
        tap = subject.tap
        assert tap is not None

        def all_hellos() -> bool:
            subject.check_running()
            return len(tap.hello_pids()) >= n

        wait_until(all_hellos, timeout, f"{n} hellos", interval=0.005)
        with tap.lock:
            result["all_hellos"] = max(h.t for h in tap.hellos) - t0
        if tap.welcome_at is None or tap.welcome_at > min(h.t for h in tap.hellos):
            result["note"] = "the tap was welcomed after the first hello"
    return result


def settle(subject: Subject, seconds: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until the fleet is whole again, then let it finish its start-up work.

    A peer signalled while it is forking a replacement can lose the signal (supervisord's
    child runs supervisord's handlers until exec), so nothing is measured mid-restart.
    """
    wait_until(lambda: len(subject.live_workers()) >= subject.n, timeout, f"{subject.n} {subject.name} workers",
               interval=0.01)
    time.sleep(seconds)
    subject.check_running()


def _kill_and_time(subject: Subject, victims: list[int], timeout: float) -> dict[str, Any]:
    before = subject.worker_pids()
    t0 = time.monotonic()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    new: set[int] = set()

    def replaced() -> bool:
        new.update(p for p in subject.worker_pids() - before if alive(p))
        return len(new) >= len(victims)

    out: dict[str, Any] = {}
    try:
        out["pid"] = wait_until(replaced, timeout, "replacements") - t0
    except BenchTimeout:
        out["pid"] = None
        return out
    if isinstance(subject, Botvisor):
        tap = subject.tap
        assert tap is not None

        def hellos() -> bool:
            return all(tap.hello_of(p) is not None for p in new)

        try:
            wait_until(hellos, timeout, "the replacements' hellos", interval=0.005)
            out["hello"] = max(tap.hello_of(p).t for p in new) - t0  # type: ignore[union-attr]
        except BenchTimeout:
            out["hello"] = None
    return out


def crash(subject: Subject, kills: int, rng: random.Random) -> dict[str, Any]:
    """SIGKILL one random worker ``kills`` times, a random wait apart: time to its replacement."""
    pid_times: list[float] = []
    hello_times: list[float] = []
    missing = 0
    for _ in range(kills):
        time.sleep(rng.uniform(*CRASH_WAIT))
        subject.check_running()
        victim = rng.choice(sorted(subject.live_workers()))
        got = _kill_and_time(subject, [victim], REPLACE_TIMEOUT)
        if got["pid"] is None:
            missing += 1
            continue
        pid_times.append(got["pid"])
        if got.get("hello") is not None:
            hello_times.append(got["hello"])
    return {"pid_median": median(pid_times), "pid_p95": pct(pid_times, 95), "pid_max": max(pid_times, default=None),
            "hello_median": median(hello_times), "hello_p95": pct(hello_times, 95), "missing": missing,
            "kills": kills}


def mass_crash(subject: Subject, fraction: float, rng: random.Random) -> dict[str, Any]:
    """SIGKILL ``fraction`` of the workers at once: time until all are replaced."""
    time.sleep(CRASH_WAIT[1])
    live = sorted(subject.live_workers())
    victims = rng.sample(live, max(1, round(len(live) * fraction)))
    got = _kill_and_time(subject, victims, REPLACE_TIMEOUT * 2)
    return {"killed": len(victims), "all_pids": got["pid"], "all_hellos": got.get("hello")}


def hang(subject: Subject, bound: float, rng: random.Random) -> dict[str, Any]:
    """SIGSTOP one worker: time until it is gone and replaced (or ``bound`` passed)."""
    victim = rng.choice(sorted(subject.live_workers()))
    before = subject.worker_pids()
    t0 = time.monotonic()
    os.kill(victim, signal.SIGSTOP)

    def replaced() -> bool:
        return not alive(victim) and any(alive(p) for p in subject.worker_pids() - before)

    out: dict[str, Any] = {"bound": bound}
    try:
        out["replaced"] = wait_until(replaced, bound, "the hung worker's replacement", interval=0.005) - t0
    except BenchTimeout:
        out["replaced"] = None
        if alive(victim):  # the peer never noticed: end it ourselves (it restarts it as a crash)
            os.kill(victim, signal.SIGKILL)
            os.kill(victim, signal.SIGCONT)
            wait_until(lambda: not alive(victim), 10, "the hung worker to die")
    if isinstance(subject, Botvisor) and subject.tap is not None:
        bot = next((h.bot for h in subject.tap.hellos if h.pid == victim), None)
        stopping = subject.tap.state_after(bot, "stopping", t0) if bot else None
        out["detected"] = stopping.t - t0 if stopping else None
        out["detected_reason"] = stopping.reason if stopping else None
    return out


def idle(subject: Subject, seconds: float) -> dict[str, Any]:
    """The supervisor's own CPU (percent of one core) over ``seconds``, and its RSS."""
    proc = psutil.Process(subject.pid)
    helpers = [psutil.Process(p) for p in subject.helper_pids()] if isinstance(subject, Botvisor) else []
    restarts_before = len(subject.worker_pids())
    c0 = sum(proc.cpu_times()[:2])
    h0 = sum(sum(h.cpu_times()[:2]) for h in helpers)
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    c1 = sum(proc.cpu_times()[:2])
    h1 = sum(sum(h.cpu_times()[:2]) for h in helpers)
    subject.check_running()
    return {"cpu_pct": (c1 - c0) / elapsed * 100, "helpers_cpu_pct": (h1 - h0) / elapsed * 100 if helpers else None,
            "rss": proc.memory_info().rss, "seconds": elapsed,
            "worker_pids_changed": len(subject.worker_pids()) != restarts_before}


def memory(subject: Subject) -> dict[str, Any]:
    """RSS, PSS and USS of every worker (medians) and the fleet's total PSS with its supervisor."""
    rss, pss, uss = [], [], []
    for pid in sorted(subject.live_workers()):
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss.append(info.rss)
        pss.append(info.pss)
        uss.append(info.uss)
    own = [subject.pid] + (sorted(subject.helper_pids()) if isinstance(subject, Botvisor) else [])
    supervisor_pss = 0
    for pid in own:
        try:
            supervisor_pss += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass
    return {"workers": len(rss), "rss": median(rss), "pss": median(pss), "uss": median(uss),
            "fleet_pss": sum(pss) + supervisor_pss, "supervisor_pss": supervisor_pss}


def shutdown(subject: Subject, timeout: float) -> dict[str, Any]:
    """SIGTERM the daemon: time until it and every worker are gone."""
    pids = subject.live_workers() | ({*subject.helper_pids()} if isinstance(subject, Botvisor) else set())
    t0 = time.monotonic()
    subject.terminate()

    def gone() -> bool:
        return subject.proc.poll() is not None and not any(alive(p) for p in pids)

    try:
        return {"gone": wait_until(gone, timeout, f"{subject.name} to shut down") - t0,
                "exit": subject.proc.returncode}
    except BenchTimeout:
        return {"gone": None, "left": sum(alive(p) for p in pids)}
