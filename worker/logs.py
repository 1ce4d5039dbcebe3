"""A worker's logging: structured lines, and every byte a library prints captured into them.

Lines look like ``2026-11-25T19:43:10.123Z INFO bot=b1 pid=42 botvisor.worker: message``. They
go to the supervisor's stderr (journald) or, with ``log_dir``, to ``<log_dir>/<bot>.log`` with
size-based rotation. File descriptors 1 and 2 are replaced by pipes that a reader thread turns
into log records, so Go code writing to fd 1 (neonize) or a stray print() is never lost and
never lands mid-line in another bot's output: each record is written whole by one write().
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from pathlib import Path


class LineFormatter(logging.Formatter):
    def __init__(self, bot_id: str) -> None:
        super().__init__()
        self.bot_id = bot_id

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        message = message.replace("\n", "\n    ")  # one record stays one visual block
        return f"{ts} {record.levelname} bot={self.bot_id} pid={record.process} {record.name}: {message}"


def configure_logging(bot_id: str, level: str, log_dir: Path | None = None,
                      max_bytes: int = 10 << 20, backups: int = 5, capture: bool = True) -> None:
    """Route the root logger to this bot's sink and, with ``capture``, swallow fds 1 and 2 into it."""
    sink_fd = os.dup(2)
    if log_dir is not None:
        Path(log_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            Path(log_dir) / f"{bot_id}.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    else:
        handler = logging.StreamHandler(os.fdopen(sink_fd, "w", buffering=1, encoding="utf-8", errors="replace"))
    handler.setFormatter(LineFormatter(bot_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if capture:
        _capture_fd(1, logging.getLogger("stdout"), logging.INFO)
        _capture_fd(2, logging.getLogger("stderr"), logging.WARNING)


_pumps: list[tuple[int, threading.Thread]] = []


def flush_captured(timeout: float = 0.5) -> None:
    """Before exit: push out what is buffered and let the reader threads log the last lines."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            stream.close()
        except (OSError, ValueError):
            pass
    for fd, thread in _pumps:
        try:
            os.close(fd)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for _fd, thread in _pumps:
        thread.join(max(0.0, deadline - time.monotonic()))
    for handler in logging.getLogger().handlers:
        handler.flush()


def _capture_fd(fd: int, logger: logging.Logger, level: int) -> None:
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, fd)
    os.close(write_fd)
    if fd == 1:
        sys.stdout = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    else:
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                logger.log(level, "%s", raw.rstrip(b"\n").decode(errors="replace"))

    thread = threading.Thread(target=pump, name=f"capture-fd{fd}", daemon=True)
    thread.start()
    _pumps.append((fd, thread))
