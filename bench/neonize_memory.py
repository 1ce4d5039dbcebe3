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


def breakdown(pid: int) -> dict[str, int]:
    """A worker's private memory (USS: Private_Clean + Private_Dirty) by where it lives, from
    /proc/PID/smaps: the glibc heap (Python objects and C allocations), the Go runtime's
    anonymous mappings (its heap arenas and stacks sit at Go's own high addresses, 0xc000000000),
    other anonymous mappings (glibc malloc's per-thread arenas, Python's arenas, thread stacks),
    neonize's Go library (its relocated data), other shared libraries and files."""
    out: dict[str, int] = {}
    where = "?"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split(None, 5)
            if "-" in head[0] and not head[0].endswith(":"):
                start = int(head[0].split("-")[0], 16)
                path = head[5].strip() if len(head) > 5 else ""
                if path == "[heap]":
                    where = "glibc heap ([heap]: Python objects, C allocations)"
                elif path.startswith("[stack"):
                    where = "main thread stack"
                elif not path and 0xC000000000 <= start < 0xD000000000:
                    where = "Go heap and stacks (0xc000000000 arenas)"
                elif not path:
                    where = "other anonymous (malloc arenas, Python arenas, thread stacks, Go runtime)"
                elif "neonize" in path and path.endswith(".so"):
                    where = "neonize Go library (.so data)"
                elif ".so" in path:
                    where = "other shared libraries (.so data)"
                elif path.endswith(".db") or "-wal" in path or "-shm" in path:
                    where = "SQLite files (mapped)"
                else:
                    where = f"other files ({Path(path).name})" if path.startswith("/") else path
            elif head[0] in ("Private_Clean:", "Private_Dirty:"):
                out[where] = out.get(where, 0) + int(head[1]) * 1024
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
