"""The outbox's file: one SQLite database in the bot's own directory, one row per accepted send.

Why SQLite: every state change is one transaction (atomic: a SIGKILL leaves the row before or
after the change, never between), WAL keeps a writer from blocking and survives a killed
process, and ``synchronous=FULL`` (``outbox_sync``, the default) makes a committed row survive a
power cut too, for about 1 ms per change on this machine's disk (``normal``: 0.1 ms, and a
power cut may lose the last changes, never corrupt the file). The file and
its ``-wal``/``-shm`` companions are 0600 (the worker's umask, enforced again here).

A row moves ``queued -> sending -> sent | failed``; ``sending`` is written, with the attempt
counted, *before* the backend is called, so a worker that dies mid-attempt leaves a row that
says so (worker/outbox.py decides what a new worker does with it). Finished rows are kept, the
newest ``KEEP_FINISHED``, so a late lookup of a send id still finds its outcome.

Cost per send, which is on the worker's loop: two small commits. The table has no index on
``state`` (an earlier one is dropped): the only queries by state read a table of at most
``KEEP_FINISHED`` + ``outbox_max`` rows once per worker start or once per hundred sends, and
each commit would have had to rewrite index pages for it too (measured in a bare sqlite3 loop
of these statements: 81-91 -> 64 µs of CPU per send). The write-ahead log is checkpointed on a
thread (worker/checkpointer.py), not inside a send's commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .checkpointer import Checkpointer

OUTBOX_FILE = "outbox.sqlite3"
#: finished rows kept for lookups; older ones are deleted
KEEP_FINISHED = 1000
PENDING = ("queued", "sending")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order sends go out in
    id         TEXT NOT NULL UNIQUE,               -- the send id the caller got
    op         TEXT NOT NULL,                      -- the operation: send, send_media, react, ...
    args       TEXT NOT NULL,                      -- its validated arguments, JSON
    message_id TEXT,                               -- the WhatsApp id, chosen before the first attempt
    state      TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,                      -- unix seconds
    updated_at REAL NOT NULL,
    result     TEXT,                               -- the backend's answer (JSON), once sent
    reason     TEXT                                -- why it failed
);
DROP INDEX IF EXISTS sends_pending;
"""


@dataclass
class Entry:
    seq: int
    id: str
    op: str
    args: dict[str, Any]
    message_id: str | None
    state: str
    attempts: int
    created_at: float
    result: dict[str, Any] | None = None
    reason: str | None = None

    @property
    def to(self) -> str | None:
        """The chat the send goes to (``to`` for messages, ``chat`` for reactions, edits, revokes)."""
        value = self.args.get("to") or self.args.get("chat")
        return value if isinstance(value, str) else None


class OutboxFileError(Exception):
    """The outbox file cannot be opened or read (corrupt, not a database)."""


class OutboxStore:
    def __init__(self, path: Path, sync: str = "full") -> None:
        self.path = Path(path)
        if sync not in ("full", "normal"):
            raise ValueError(f"outbox sync must be 'full' or 'normal', got {sync!r}")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            # the schema is made unsynced: lost in a power cut, it is only made again (it holds no
            # send yet); a worker's first start then costs ~1 ms, not tens of ms of fsyncs
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            self.db.execute("SELECT count(*) FROM sends").fetchone()
            self.checkpointer = Checkpointer(self.db, self.path, sync)
        except sqlite3.DatabaseError as exc:
            try:
                self.db.close()
            except Exception:
                pass
            raise OutboxFileError(f"{self.path}: {exc}") from exc
        for suffix in ("", "-wal", "-shm"):  # private whatever created them
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except FileNotFoundError:
                pass
        self._finished_since_prune = 0

    def close(self) -> None:
        self.checkpointer.close()
        self.db.close()

    # -- reading -------------------------------------------------------------------------------
    def _entry(self, row: tuple[Any, ...]) -> Entry:
        seq, id_, op, args, message_id, state, attempts, created_at, result, reason = row
        return Entry(seq, id_, op, json.loads(args), message_id, state, attempts, created_at,
                     json.loads(result) if result else None, reason)

    _COLUMNS = "seq, id, op, args, message_id, state, attempts, created_at, result, reason"

    def pending(self) -> Iterator[Entry]:
        """Queued and interrupted sends, oldest first."""
        rows = self.db.execute(f"SELECT {self._COLUMNS} FROM sends WHERE state IN (?, ?) ORDER BY seq", PENDING)
        return (self._entry(r) for r in rows.fetchall())

    def head(self) -> Entry | None:
        row = self.db.execute(f"SELECT {self._COLUMNS} FROM sends WHERE state IN (?, ?) ORDER BY seq LIMIT 1",
                              PENDING).fetchone()
        return self._entry(row) if row else None

    def get(self, send_id: str) -> Entry | None:
        row = self.db.execute(f"SELECT {self._COLUMNS} FROM sends WHERE id = ?", (send_id,)).fetchone()
        return self._entry(row) if row else None

    def count_pending(self) -> int:
        return self.db.execute("SELECT count(*) FROM sends WHERE state IN (?, ?)", PENDING).fetchone()[0]

    # -- writing: each call is one committed transaction -------------------------------------------
    def add(self, send_id: str, op: str, args: dict[str, Any], message_id: str | None, *,
            sending: bool = False) -> Entry:
        """Store a new send (``sending``: its first attempt starts right away, one write fewer)."""
        now = time.time()
        state, attempts = ("sending", 1) if sending else ("queued", 0)
        cursor = self.db.execute(
            "INSERT INTO sends (id, op, args, message_id, state, attempts, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (send_id, op, json.dumps(args, separators=(",", ":")), message_id, state, attempts, now, now))
        self.checkpointer.committed()
        return Entry(int(cursor.lastrowid or 0), send_id, op, args, message_id, state, attempts, now)

    def start_attempt(self, entry: Entry) -> None:
        entry.state, entry.attempts = "sending", entry.attempts + 1
        self.db.execute("UPDATE sends SET state = 'sending', attempts = ?, updated_at = ? WHERE seq = ?",
                        (entry.attempts, time.time(), entry.seq))
        self.checkpointer.committed()

    def requeue(self, entry: Entry) -> None:
        entry.state = "queued"
        self.db.execute("UPDATE sends SET state = 'queued', updated_at = ? WHERE seq = ?", (time.time(), entry.seq))
        self.checkpointer.committed()

    def finish(self, entry: Entry, state: str, *, message_id: str | None = None,
               result: dict[str, Any] | None = None, reason: str | None = None) -> None:
        entry.state, entry.result, entry.reason = state, result, reason
        if message_id is not None:
            entry.message_id = message_id
        self.db.execute(
            "UPDATE sends SET state = ?, message_id = ?, result = ?, reason = ?, updated_at = ? WHERE seq = ?",
            (state, entry.message_id, json.dumps(result, default=str) if result is not None else None, reason,
             time.time(), entry.seq))
        self.checkpointer.committed()
        self._finished_since_prune += 1
        if self._finished_since_prune >= 100:
            self._finished_since_prune = 0
            self.prune()

    def prune(self, keep: int = KEEP_FINISHED) -> None:
        self.db.execute(
            "DELETE FROM sends WHERE state IN ('sent', 'failed') AND seq <= "
            "(SELECT seq FROM sends WHERE state IN ('sent', 'failed') ORDER BY seq DESC LIMIT 1 OFFSET ?)", (keep,))
