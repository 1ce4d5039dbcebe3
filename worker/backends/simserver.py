"""The SIMULATED WhatsApp server's one rule that spans processes: one live stream per account.

WhatsApp lets one connection per linked device live; a second one replaces the first
(StreamReplaced), and two processes fighting over a session corrupt it. The simulated backend
calls ``claim`` when its session opens. When $BOTVISOR_SIM_SERVER names a directory (tests and
benches that run several supervisors), the claim is an flock on ``<account>.stream`` there, held
for the worker's life (the kernel drops it when the process dies, as the server drops a dead
connection); a claim that finds the lock taken is a StreamReplaced and is appended to
``stream-replaced.log`` with both pids, for the test to read. Without the variable it does nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

SERVER_ENV = "BOTVISOR_SIM_SERVER"
REPLACED_LOG = "stream-replaced.log"


def claim(account: str, bot_id: str) -> int | None:
    """Open the account's stream; returns the descriptor holding it (keep it open) or None."""
    root = os.environ.get(SERVER_ENV)
    if not root:
        return None
    path = Path(root) / f"{account}.stream"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        record = {"event": "StreamReplaced", "account": account, "bot": bot_id, "pid": os.getpid(),
                  "holder": holder, "ts": time.time()}
        out = os.open(Path(root) / REPLACED_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(out, (json.dumps(record) + "\n").encode())
        finally:
            os.close(out)
        return fd
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {bot_id}\n".encode(), 0)
    return fd


def replaced(root: str | os.PathLike[str]) -> list[dict[str, object]]:
    """Every StreamReplaced recorded under ``root``."""
    try:
        lines = (Path(root) / REPLACED_LOG).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
