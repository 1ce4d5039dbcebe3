"""What machine the numbers come from, and what an interpreter start-up costs on it."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import msgpack
import psutil
import zmq

from . import configs, peers


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _os_name() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(configs.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(configs.REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def describe() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{_os_name()}, Linux {platform.release()}",
        "python": platform.python_version(),
        "pyzmq": f"{zmq.__version__} (libzmq {zmq.zmq_version()})",
        "msgpack": ".".join(map(str, msgpack.version)),
        "peers": peers.versions(),
        "botvisor_commit": _commit(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def interpreter_startup(runs: int = 5) -> float:
    """Median seconds for ``python -c pass`` with botvisor's interpreter."""
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=30)
        times.append(time.monotonic() - t0)
    return statistics.median(times)
