"""The supervisor's own logging: the same structured lines as the workers' (worker.logs).

To stderr by default (journald keeps them). With ``log_dir`` they go to
``<log_dir>/@supervisor.log`` with the same size-based rotation as the bots' files ('@' can
never start a bot id, so no bot's file can collide), and warnings and errors also still go
to stderr, so `systemctl status botvisor` shows what went wrong.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from protocol import SUPERVISOR_BOT
from worker.logs import FdHandler, LineFormatter


def log_file(log_dir: Path, name: str) -> Path:
    """The log file of bot ``name`` (or of the supervisor, SUPERVISOR_BOT) under ``log_dir``."""
    return Path(log_dir) / f"{name}.log"


def configure_supervisor_logging(level: str = "info", log_dir: Path | None = None,
                                 max_bytes: int = 10 << 20, backups: int = 5) -> None:
    formatter = LineFormatter("-")
    stderr = FdHandler(os.dup(2))
    stderr.setFormatter(formatter)
    handlers: list[logging.Handler] = [stderr]
    if log_dir is not None:
        Path(log_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        to_file = logging.handlers.RotatingFileHandler(log_file(log_dir, SUPERVISOR_BOT), maxBytes=max_bytes,
                                                       backupCount=backups, encoding="utf-8")
        to_file.setFormatter(formatter)
        stderr.setLevel(logging.WARNING)
        handlers.append(to_file)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level.upper())
