"""Memory of neonize workers: botvisor's (when its neonize backend exists) and a plain reference.

The reference is what a bot costs without botvisor: one Python process that imports
``neonize.client`` and dials once (offline the dial fails within milliseconds). Botvisor's
neonize worker is measured after its first failed dial, at ``n`` bots with every hello timed.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from . import configs, scenarios
from .procs import BenchTimeout, Reaper, wait_until
from .subjects import Botvisor

REFERENCE = """\
import sys, time
import neonize.client
client = neonize.client.NewClient(sys.argv[1])
try:
    client.connect()
except Exception as exc:
    print("dial failed:", type(exc).__name__, flush=True)
print("READY", flush=True)
time.sleep(600)
"""


def backend_available() -> bool:
    try:
        return importlib.util.find_spec("worker.backends.neonize") is not None
    except ImportError:
        return False


def reference(root: Path, reaper: Reaper, timeout: float = 60) -> dict[str, Any]:
    """RSS, PSS and USS of a plain process that imported neonize and failed its dial."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "neonize-reference.log"
    proc = reaper.popen([sys.executable, "-c", REFERENCE, str(root / "reference.db")], log=log)
    try:
        wait_until(lambda: "READY" in log.read_text(errors="replace") or proc.poll() is not None, timeout,
                   "the neonize reference process to dial", interval=0.05)
        if proc.poll() is not None:
            return {"error": f"exited with {proc.returncode}: {log.read_text(errors='replace')[-300:]}"}
        info = psutil.Process(proc.pid).memory_full_info()
        return {"rss": info.rss, "pss": info.pss, "uss": info.uss,
                "dial": "failed" if "dial failed" in log.read_text(errors="replace") else "connected?"}
    finally:
        proc.kill()
        proc.wait(5)


def fleet(root: Path, n: int, reaper: Reaper, timeout: float = 120) -> dict[str, Any]:
    """``n`` neonize bots under botvisor: time to all hellos, then per-worker memory."""
    if not backend_available():
        return {"skipped": "worker/backends/neonize.py is not on this branch"}
    subject = Botvisor(root, configs.BotvisorSettings(n=n, backend="neonize"), reaper)
    try:
        try:
            cold = scenarios.cold_start(subject, timeout)
        except BenchTimeout as exc:
            return {"error": str(exc)}
        # A hello comes before the backend loads neonize (and the Go runtime): wait until every
        # worker has dialled (its first connection-update; offline, the dial fails at once)
        tap = subject.tap
        assert tap is not None
        try:
            wait_until(lambda: len(tap.first_dial) >= n, timeout, f"{n} first dials", interval=0.05)
            with tap.lock:
                cold["all_dialled"] = max(tap.first_dial.values()) - subject.started_at
        except BenchTimeout as exc:
            cold["all_dialled_error"] = str(exc)
        time.sleep(1.0)  # past the failed dial's clean-up
        return {"cold": cold, "memory": scenarios.memory(subject)}
    finally:
        subject.close()
