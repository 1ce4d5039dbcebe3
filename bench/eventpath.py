"""Event path (botvisor alone): throughput with loss counted, latency at 1,000 events/s, and
the bare pyzmq+msgpack relay's ceiling in the same run, so botvisor's number reads as a fraction.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from . import configs, profile
from .procs import Reaper, wait_until
from .subjects import Botvisor

#: aggregate offered rates of the throughput steps (events/s, split evenly over the workers)
RATES = (2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 64000.0)
#: a step whose p99 latency exceeds this is building a backlog: not sustained (seconds)
MAX_P99 = 0.1
#: aggregate events per second of the latency measurement
LATENCY_RATE = 1000.0
#: each worker's simulated message_rate in the flat-out run: the config's maximum, so every
#: worker sends as fast as its loop and the supervisor's backpressure allow, as the relay's
#: publishers do (the simulated backend emits at most 256 per loop pass, so heartbeats go on)
FLAT_OUT_PER_WORKER = 1_000_000.0


def _sink(reaper: Reaper, endpoint: str, log: Path, warmup: float, duration: float) -> Any:
    return reaper.popen([sys.executable, "-m", "bench.relay", "sink", endpoint, "--warmup", str(warmup),
                         "--duration", str(duration)], log=log, cwd=configs.REPO)


def _sink_result(proc: Any, log: Path, timeout: float) -> dict[str, Any]:
    proc.wait(timeout)
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the sink printed no result:\n{log.read_text()[-2000:]}")
    return json.loads(lines[-1])


def _status(subject: Botvisor, timeout: float = 10) -> dict[str, Any]:
    from protocol.client import ControlClient

    with ControlClient(subject.endpoint("control"), timeout=timeout) as client:
        return client.call("status")


def _all_running(subject: Botvisor, timeout: float) -> None:
    def running() -> bool:
        subject.check_running()
        try:
            bots = _status(subject)["bots"]
        except Exception:
            return False
        return len(bots) == subject.n and all(b["container_state"] == "running" for b in bots)

    wait_until(running, timeout, f"{subject.n} bots running", interval=0.2)


@dataclass
class SinkWindow:
    """A measured window: a sink on the supervisor's tap, started once every bot runs (and
    ``hold`` seconds after ``started``) and past its warmup, and the supervisor's CPU from then."""

    sink: Any
    log: Path
    supervisor: psutil.Process
    cpu0: float
    t0: float

    @classmethod
    def open(cls, subject: Botvisor, root: Path, reaper: Reaper, started: float, hold: float | None,
             warmup: float, duration: float) -> SinkWindow:
        subject.tap.close()  # the sink is the tap here; the bench's own would only compete for CPU
        subject.tap = None
        _all_running(subject, 60 + subject.n * 0.2)
        if hold is not None:
            time.sleep(max(0.0, started + hold - time.monotonic()))
        log = root / "sink.log"
        sink = _sink(reaper, subject.endpoint("tap"), log, warmup, duration)
        time.sleep(warmup)
        proc = psutil.Process(subject.pid)
        return cls(sink, log, proc, sum(proc.cpu_times()[:2]), time.monotonic())

    def supervisor_cpu_pct(self) -> float:
        return (sum(self.supervisor.cpu_times()[:2]) - self.cpu0) / (time.monotonic() - self.t0) * 100


def botvisor_run(root: Path, n: int, rate_per_worker: float, reaper: Reaper, warmup: float, duration: float,
                 profile_seconds: float = 0.0, hold: float | None = None,
                 heartbeat_interval: float = 30.0) -> dict[str, Any]:
    """N simulated workers at ``rate_per_worker`` through botvisor to a sink on its tap. With
    ``hold``, the traffic begins that many seconds after the start (once every bot runs)."""
    settings = configs.BotvisorSettings(n=n, message_rate=rate_per_worker, connect_delay=hold,
                                        heartbeat_interval=heartbeat_interval)
    subject = Botvisor(root, settings, reaper)
    try:
        started = time.monotonic()
        subject.start()
        window = SinkWindow.open(subject, root, reaper, started, hold, warmup, duration)
        out = _sink_result(window.sink, window.log, warmup + duration + 30)
        out["supervisor_cpu_pct"] = window.supervisor_cpu_pct()
        status = _status(subject, timeout=60)  # flat out, the supervisor answers late
        out["events_lost"] = sum(b["events_lost"] for b in status["bots"])
        out["tap_dropped"] = status["stats"].get("tap_dropped", 0)
        if profile_seconds:
            out["profile"] = profile.top(subject.pid, profile_seconds, root / "profile.txt")
        return out
    finally:
        subject.close()


def relay_run(root: Path, n: int, reaper: Reaper, warmup: float, duration: float,
              publishers: int = 2) -> dict[str, Any]:
    """The ceiling: N publisher sockets (in ``publishers`` processes) -> relay -> sink."""
    root.mkdir(parents=True, exist_ok=True)
    inbound, outbound = f"ipc://{root / 'in.sock'}", f"ipc://{root / 'out.sock'}"
    started = [reaper.popen([sys.executable, "-m", "bench.relay", "relay", inbound, outbound],
                            log=root / "relay.log", cwd=configs.REPO)]
    try:
        wait_until(lambda: (root / "out.sock").exists(), 20, "the relay to bind", interval=0.01)
        sink_log = root / "sink.log"
        sink = _sink(reaper, outbound, sink_log, warmup, duration)
        share = [n // publishers + (1 if i < n % publishers else 0) for i in range(publishers)]
        first = 1
        for count in share:
            if count:
                started.append(reaper.popen([sys.executable, "-m", "bench.relay", "publisher", inbound, "--sockets",
                                             str(count), "--first", str(first)],
                                            log=root / f"publisher{first}.log", cwd=configs.REPO))
            first += count
        time.sleep(warmup)
        proc = psutil.Process(started[0].pid)
        c0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
        out = _sink_result(sink, sink_log, warmup + duration + 30)
        out["relay_cpu_pct"] = (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0) * 100
        out["publisher_processes"] = sum(1 for c in share if c)
        return out
    finally:
        for proc in started:
            proc.kill()
            proc.wait(5)


def kept_up(step: dict[str, Any]) -> bool:
    """Sustained: at least 95 % of the offered rate delivered, nothing lost, and no queue
    building up (p99 latency under MAX_P99; a growing backlog shows as seconds)."""
    return (step["rate"] >= 0.95 * step["offered"] and step["gaps"] == 0 and step["events_lost"] == 0
            and step.get("p99") is not None and step["p99"] < MAX_P99)


def event_path(root: Path, n: int, reaper: Reaper, duration: float, profile_seconds: float,
               warmup: float = 2.0, rates: tuple[float, ...] = RATES) -> dict[str, Any]:
    """Sustained throughput (offered rate doubled until botvisor falls behind or loses an
    event), the bare relay's ceiling, and latency at LATENCY_RATE."""
    steps: list[dict[str, Any]] = []
    for i, rate in enumerate(rates):
        step = botvisor_run(root / f"rate{int(rate)}", n, rate / n, reaper, warmup / 2, duration)
        step["offered"] = rate
        step["kept_up"] = kept_up(step)
        steps.append(step)
        if not step["kept_up"] or i == len(rates) - 1:
            if profile_seconds:  # where the supervisor's time goes when it cannot keep up
                again = botvisor_run(root / "profile", n, rate / n, reaper, warmup / 2, 1.0, profile_seconds)
                step["profile"] = again.get("profile")
            break
    sustained = [s for s in steps if s["kept_up"]]
    best = max(sustained, key=lambda s: s["rate"]) if sustained else None
    # the same regime as the ceiling: every sender flat out, what arrives counted, loss counted
    try:
        # the flood begins once every bot runs: a supervisor busy relaying answers `status` late
        flat_out: dict[str, Any] | None = botvisor_run(root / "flatout", n, FLAT_OUT_PER_WORKER, reaper, warmup,
                                                       duration, profile_seconds, hold=5.0 + n * 0.05)
    except Exception as exc:  # the other measurements of this size still count
        flat_out = {"error": f"{type(exc).__name__}: {exc}"}
    ceiling = relay_run(root / "relay", n, reaper, warmup, duration)
    latency = botvisor_run(root / "latency", n, LATENCY_RATE / n, reaper, warmup / 2, duration)
    return {"steps": steps, "flat": best or steps[-1], "limit": steps[-1], "flat_out": flat_out, "ceiling": ceiling,
            "latency": latency}
