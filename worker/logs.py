"""A worker's logging: structured lines, and every byte a library prints captured into them.

Lines look like ``2026-11-25T19:43:10.123Z INFO bot=b1 pid=42 botvisor.worker: message``. They
go to the supervisor's stderr (journald) or, with ``log_dir``, to ``<log_dir>/<bot>.log`` with
size-based rotation (one file per bot: no other process writes it). File descriptors 1 and 2
are replaced by pipes that a reader thread turns into log records, so Go code writing to fd 1
(neonize) or a stray print() ends up in the bot's log, attributed to it.

Whole lines: every record is written with a single write() (FdHandler), and captured output is
cut into pieces of at most MAX_LINE bytes, so a record stays under PIPE_BUF (4096 bytes) and
the kernel never splices another bot's bytes into it on the shared stderr pipe or socket.
What a worker prints just before it is killed or crashes can still be lost: the reader thread
dies with the process (docs/operations.md).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from pathlib import Path

#: bytes of captured output per record; with the line prefix a record stays under PIPE_BUF
MAX_LINE = 3500


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
    if log_dir is not None:
        Path(log_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            Path(log_dir) / f"{bot_id}.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    else:
        handler = FdHandler(os.dup(2))  # the inherited stderr, before fd 2 becomes a capture pipe
    handler.setFormatter(LineFormatter(bot_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if capture:
        _capture_fd(1, logging.getLogger("stdout"), logging.INFO)
        _capture_fd(2, logging.getLogger("stderr"), logging.WARNING)


class FdHandler(logging.Handler):
    """Each record to a file descriptor in one write() call, so concurrent writers never mix."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", errors="replace")
            while data:  # a partial write (signal, full socket) writes the rest, never interleaved
                data = data[os.write(self.fd, data):]
        except Exception:
            self.handleError(record)


def split_line(raw: bytes, limit: int = MAX_LINE) -> list[bytes]:
    """Cut one captured line into pieces of at most ``limit`` bytes, never inside a UTF-8 character."""
    pieces = []
    while len(raw) > limit:
        cut = limit
        while cut > 0 and raw[cut] & 0xC0 == 0x80:  # a continuation byte: back up to the character start
            cut -= 1
        cut = cut or limit
        pieces.append(raw[:cut])
        raw = raw[cut:]
    pieces.append(raw)
    return pieces


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
                for piece in split_line(raw.rstrip(b"\n")):
                    logger.log(level, "%s", piece.decode(errors="replace"))

    thread = threading.Thread(target=pump, name=f"capture-fd{fd}", daemon=True)
    thread.start()
    _pumps.append((fd, thread))
