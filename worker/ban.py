"""A temporary ban outlives the worker that heard of it: one small file in the bot's directory.

The supervisor starts a banned bot again when the ban expires and refuses an earlier start
(supervisor/container.py), but only while it runs: after a supervisor restart an autostart bot
would dial during its ban, which can prolong it. So the worker that ends with a ban records its
expiry here, and a worker starting before that time ends at once with the same fatal error (the
container then waits for the expiry again). A forced start (`botvisor start --force`) removes
the file first (supervisor/commands/lifecycle.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .atomic import write_atomic
from .errors import FatalBotError, WorkerExit

BAN_FILE = "temporary-ban.json"


def record(bot_dir: Path, exc: WorkerExit) -> None:
    """Remember a temporary ban's expiry (only one with an expiry: without it nothing is known)."""
    if exc.code == "temporary-ban" and exc.expires_at is not None:
        write_atomic(bot_dir / BAN_FILE, json.dumps({"expires_at": exc.expires_at, "message": exc.message}).encode())


def check(bot_dir: Path, now: float | None = None) -> None:
    """Raise the ban's fatal error again if it has not expired; forget an expired one."""
    path = bot_dir / BAN_FILE
    try:
        ban = json.loads(path.read_text())
        expires_at = float(ban["expires_at"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # unreadable: do not keep a bot down on a guess
        return
    if (time.time() if now is None else now) >= expires_at:
        path.unlink(missing_ok=True)
        return
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    raise FatalBotError("temporary-ban", f"still temporarily banned until {when} (from an earlier worker: "
                                         f"{ban.get('message', 'temporary ban')}); not connecting before then",
                        status=402, expires_at=expires_at)


def forget(bot_dir: Path) -> None:
    (bot_dir / BAN_FILE).unlink(missing_ok=True)
