"""A SQLite write-ahead log copied into its database on a thread of its own, not on the worker's loop.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1000 pages):
it writes the logged pages back into the database and, under ``synchronous`` NORMAL or FULL,
fsyncs the log and then the database. That commit takes milliseconds (tens on a busy disk)
instead of tens of microseconds, and on the outbox it is a send, on the worker's loop, every
hundred or so: the loop's slowest turns. Here the loop's connection only counts its commits and
pokes this thread every ``every`` of them; the thread runs a PASSIVE checkpoint on a connection
of its own (the same ``synchronous``, so the same fsyncs), which never blocks the writer, and
SQLite releases the GIL while it does the I/O.

A passive checkpoint copies the log while the loop may keep appending to it, and the log starts
over from its beginning only when a checkpoint has caught up with the last commit. When sends
pause (at 100 sends/s they do, between two sends) that happens by itself. Under a sustained
flood it does not, so the loop's connection keeps SQLite's automatic checkpoint, at
``FALLBACK_PAGES`` (four times SQLite's default): the log grows to that, the loop checkpoints
it once (if the thread is in a checkpoint just then, the next commit does), and it starts over;
``journal_size_limit`` gives the disk back. (Having the loop catch up after every thread
checkpoint instead was tried: it put an fsync back on the loop every few hundred sends.)

Nothing about durability changes: a commit is as durable as before (a checkpoint only moves
committed pages, with the same fsyncs), and a process killed mid-checkpoint leaves a sound
database, as SQLite guarantees for any checkpoint.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("botvisor.worker.checkpointer")

#: commits between two checkpoints on the thread (a send is two commits of one to three pages)
DEFAULT_EVERY = 250
#: the loop connection's automatic checkpoint (pages of 4 KiB: a 16 MiB log)
FALLBACK_PAGES = 4000
#: what the log file is cut back to once it starts over
SIZE_LIMIT = 4 * 1024 * 1024


class Checkpointer:
    def __init__(self, db: sqlite3.Connection, path: Path, sync: str, every: int | None = None) -> None:
        self.path, self.sync, self.every = path, sync, every or DEFAULT_EVERY
        db.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={SIZE_LIMIT}")
        self._commits = 0
        #: checkpoints the thread made (read by tests)
        self.checkpoints = 0
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None  # started at the first poke: readers never need it

    def committed(self) -> None:
        """One more commit on the loop's connection (called on the loop, right after it)."""
        self._commits += 1
        if self._commits >= self.every:
            self._commits = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-checkpoint", daemon=True)
                self._thread.start()
            self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Let the thread finish the checkpoint it is in and end (before the loop's connection closes,
        so that close makes the last checkpoint and removes the log, as before)."""
        self._closing = True
        if self._thread is not None:
            self._wake.set()
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            db.execute(f"PRAGMA synchronous={self.sync.upper()}")
        except sqlite3.Error as exc:  # the loop's connection checkpoints by itself then (FALLBACK_PAGES)
            log.warning("cannot open %s for checkpoints: %s", self.path, exc)
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # e.g. a full disk: the next poke tries again
                    log.warning("checkpoint of %s failed: %s", self.path, exc)
        finally:
            db.close()
