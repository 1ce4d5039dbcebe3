"""SIMULATED: what the simulated network delivered, by WhatsApp message id, kept in the bot's directory.

WhatsApp keeps one message per id from one sender in one chat: a message sent again under an
id the receiver already has is not shown twice (that is what makes whatsmeow's chosen ids,
SendRequestExtra.ID, a safe retry). The simulated backend models that receiver here, and makes
every transmission observable: each one is a JSON line in ``simulated-deliveries.jsonl``, with
``duplicate: true`` when its id had been delivered before. The file outlives the worker, so a
test can check across SIGKILLs and restarts that every send went under one id and that no
receiver saw a message twice.

Lines are appended with one ``write`` on an O_APPEND descriptor, opened at the first delivery
and kept open (one system call per delivery, not three): a killed worker leaves whole lines (the
kernel keeps what was written; no fsync, a simulation need not survive power loss).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DELIVERIES_FILE = "simulated-deliveries.jsonl"


def read_deliveries(bot_dir: Path) -> list[dict[str, Any]]:
    """Every transmission the simulated network saw for this bot, oldest first."""
    path = Path(bot_dir) / DELIVERIES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Deliveries:
    def __init__(self, bot_dir: Path) -> None:
        self.path = Path(bot_dir) / DELIVERIES_FILE
        earlier = read_deliveries(bot_dir)
        self.ids = {d["message_id"] for d in earlier}
        self.count = len(earlier)
        self._fd: int | None = None
        self._pid = os.getpid()

    def record(self, message_id: str, op: str, to: str, **content: Any) -> bool:
        """Record one transmission; True when the receiver sees a new message (its id is new)."""
        new = message_id not in self.ids
        self.ids.add(message_id)
        self.count += 1
        line = {"message_id": message_id, "op": op, "to": to, **content, "duplicate": not new, "ts": time.time(),
                "pid": self._pid}
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(self._fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
        return new

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
