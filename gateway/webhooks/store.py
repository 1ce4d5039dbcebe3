"""The outbox's database: every delivery in SQLite before its first attempt (the synchronous
half; gateway/webhooks/outbox.py drives it from asyncio).

One database in the gateway's data directory, in WAL mode, with ``synchronous`` from
``[gateway] outbox_sync``: FULL (the default) survives a crash and a power cut, NORMAL a crash.
The CLI (``botvisor webhooks``) opens the same file; the running gateway sees its changes
within a second (dispatcher.py polls for them).

Tables: ``deliveries`` (pending and dead rows; a delivered row is deleted), ``cursors`` (per
bot, the last event written: where a restarted gateway resumes), ``endpoints`` (paused or
not) and ``counters`` (what the bound dropped).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    bot TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created REAL NOT NULL,
    event_ts REAL NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    UNIQUE (endpoint, event_id)
);
CREATE INDEX IF NOT EXISTS lane ON deliveries (endpoint, bot, state, id);
CREATE INDEX IF NOT EXISTS dead ON deliveries (state, id);
CREATE TABLE IF NOT EXISTS cursors (
    bot TEXT PRIMARY KEY, supervisor INTEGER NOT NULL, pid INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0, paused_at REAL, reason TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

FILE = "outbox.sqlite3"
#: [gateway] outbox_sync -> SQLite's synchronous (in WAL mode NORMAL fsyncs only at checkpoints)
SYNC = {"full": "FULL", "normal": "NORMAL"}


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    endpoint: str
    event_id: str
    bot: str
    type: str
    body: bytes
    state: str
    attempts: int
    next_at: float
    created: float
    event_ts: float
    last_error: str | None
    last_status: int | None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "event_id": self.event_id, "bot": self.bot,
                "type": self.type, "state": self.state, "attempts": self.attempts, "created": self.created,
                "next_at": self.next_at, "last_error": self.last_error, "last_status": self.last_status}


@dataclass(frozen=True, slots=True)
class Cursor:
    supervisor: int
    pid: int
    seq: int
    ts: float


#: how long a connection that may wait waits for another's write lock (the CLI's, a moment)
BUSY_MS = 10_000
#: the outbox's bodies: the JSON ``json.dumps(separators=(",", ":"), ensure_ascii=False)`` writes
#: (exponents spelled shorter: 1.5e-7), at a tenth of the CPU (0.7 against 8.3 µs an envelope)
encode_json = msgspec.json.Encoder().encode


class Busy(Exception):
    """Another connection holds the write lock (a connection that does not wait: see Store)."""


def connect(path: Path, sync: str = "full", wait: bool = True) -> sqlite3.Connection:
    """The outbox's database; ``sync`` is [gateway] outbox_sync (SQLite's ``synchronous``).
    ``wait=False``: the connection never waits for another's lock (Busy instead) and never
    checkpoints by itself (Store.checkpoint does, when its owner says)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, timeout=BUSY_MS / 1000 if wait else 0.0, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={SYNC[sync]}")
    if not wait:
        db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(SCHEMA)
    return db


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    return [Row(*r) for r in cursor.fetchall()]


COLUMNS = ("id, endpoint, event_id, bot, type, body, state, attempts, next_at, created, event_ts, "
           "last_error, last_status")


class Store:
    """The synchronous operations, each one transaction (the CLI uses these directly)."""

    def __init__(self, path: Path, limit: int = 1_000_000, sync: str = "full", wait: bool = True) -> None:
        self.path = path
        self.limit = limit
        self.db = connect(path, sync, wait)
        #: rows in the table, as far as this connection knows (recounted before the bound acts)
        self._total = self.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    # -- ingest ----------------------------------------------------------------------------
    def write(self, items: list[tuple[dict[str, Any], list[str], Cursor | None]]) -> tuple[list[Row], int]:
        """Store the deliveries of a batch of messages, and their bots' cursors."""
        return self.apply([("write", item) for item in items])

    def apply(self, ops: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Row], int]:
        """A batch of writes in one transaction: ``write`` (envelope, endpoints, cursor),
        ``delivered`` (row id,) and ``failed`` (the arguments of ``failed``). Returns the new
        rows and how many rows the bound dropped."""
        done = self.stage(ops)
        self.commit()
        return done

    def stage(self, ops: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Row], int]:
        """``apply`` up to its commit: the transaction is left open for ``commit``, which may run on
        another thread (the fsync; see outbox.py). Rolled back if it fails; Busy when a
        connection that does not wait meets another's write lock."""
        now = time.time()
        created: list[Row] = []
        cursors: dict[str, Cursor] = {}  # the batch's last cursor per bot is all that must be kept
        delivered: list[tuple[int]] = []
        failed: list[tuple[Any, ...]] = []
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise Busy(str(exc)) from None
            raise
        try:
            for kind, args in ops:
                if kind == "delivered":
                    delivered.append(args)
                elif kind == "failed":
                    failed.append(args)
                else:
                    self._insert(db, now, *args, created, cursors)
            # outcomes name rows of earlier commits (a lane is handed a row once it is committed):
            # their order against this batch's inserts does not matter, so each kind goes at once
            if delivered:
                self._total -= db.executemany("DELETE FROM deliveries WHERE id = ?", delivered).rowcount
            if failed:
                db.executemany("UPDATE deliveries SET attempts = ?, next_at = ?, last_error = ?, last_status = ?,"
                               " state = ? WHERE id = ?",
                               [(attempts, next_at, error[:500], status, "dead" if dead else "pending", row_id)
                                for row_id, attempts, next_at, error, status, dead in failed])
            if cursors:
                db.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?, ?)",
                               [(bot, c.supervisor, c.pid, c.seq, c.ts) for bot, c in cursors.items()])
            self._count("delivered", len(delivered))
            self._total += len(created)
            dropped = self._bound() if self._total > self.limit else 0
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return created, dropped

    @staticmethod
    def _insert(db: sqlite3.Connection, now: float, envelope: dict[str, Any], endpoints: list[str],
                cursor: Cursor | None, created: list[Row], cursors: dict[str, Cursor]) -> None:
        if endpoints:
            raw = encode_json(envelope)
            event_id, bot, typ, ts = envelope["id"], envelope["bot"], envelope["type"], envelope["timestamp"]
            for endpoint in endpoints:
                cur = db.execute(
                    "INSERT OR IGNORE INTO deliveries (endpoint, event_id, bot, type, body, next_at, created,"
                    " event_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (endpoint, event_id, bot, typ, raw, now, now, ts))
                if cur.rowcount:
                    created.append(Row(int(cur.lastrowid), endpoint, event_id, bot, typ, raw, "pending", 0, now, now,
                                       ts, None, None))
        if cursor is not None:
            cursors[envelope["bot"]] = cursor

    def commit(self) -> None:
        """End the transaction ``stage`` left open (rolled back if the commit fails)."""
        try:
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def apply_waiting(self, ops: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Row], int]:
        """``apply`` on a connection that does not wait, waiting this once (another held the lock)."""
        self.db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        try:
            return self.apply(ops)
        finally:
            self.db.execute("PRAGMA busy_timeout=0")

    def checkpoint(self) -> None:
        """Copy the log into the database (what SQLite's automatic checkpoint does, here when the
        owner of a connection that does not wait runs it: off the event loop, between commits,
        so it completes and the log starts again from its beginning)."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _bound(self) -> int:
        """Past ``limit`` rows, drop the oldest dead letters, then (counted) the oldest pending."""
        (total,) = self.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()
        self._total = total
        over = total - self.limit
        if over <= 0:
            return 0
        dead = self.db.execute("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state = 'dead'"
                               " ORDER BY id LIMIT ?)", (over,)).rowcount
        pending = 0
        if over - dead > 0:
            pending = self.db.execute("DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries ORDER BY id "
                                      "LIMIT ?)", (over - dead,)).rowcount
        self._count("dropped_dead", dead)
        self._count("dropped_pending", pending)
        self._total -= dead + pending
        return dead + pending

    def _count(self, name: str, n: int) -> None:
        if n:
            self.db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
                            (name, n, n))

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    def cursors(self) -> dict[str, Cursor]:
        return {bot: Cursor(*rest) for bot, *rest in self.db.execute("SELECT * FROM cursors").fetchall()}

    # -- delivery --------------------------------------------------------------------------
    def lane(self, endpoint: str, bot: str, after: int, limit: int = 500) -> list[Row]:
        """The next pending rows of one (endpoint, bot) lane, oldest first."""
        return _rows(self.db.execute(
            f"SELECT {COLUMNS} FROM deliveries WHERE endpoint = ? AND bot = ? AND state = 'pending' AND id > ?"
            " ORDER BY id LIMIT ?", (endpoint, bot, after, limit)))

    def lanes(self, after: int = 0) -> list[tuple[str, str, int]]:
        """(endpoint, bot, max id) of every lane with pending rows newer than ``after``."""
        return self.db.execute("SELECT endpoint, bot, MAX(id) FROM deliveries WHERE state = 'pending' AND id > ?"
                               " GROUP BY endpoint, bot", (after,)).fetchall()

    def delivered(self, row_id: int) -> None:
        self.apply([("delivered", (row_id,))])

    def failed(self, row_id: int, attempts: int, next_at: float, error: str, status: int | None,
               dead: bool) -> None:
        self.apply([("failed", (row_id, attempts, next_at, error, status, dead))])

    def pending_row(self, row_id: int) -> bool:
        row = self.db.execute("SELECT state FROM deliveries WHERE id = ?", (row_id,)).fetchone()
        return row is not None and row[0] == "pending"

    # -- dead letters and operations (the API and the CLI) ---------------------------------
    def dead(self, endpoint: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        where, args = ("AND endpoint = ?", (endpoint,)) if endpoint else ("", ())
        return _rows(self.db.execute(f"SELECT {COLUMNS} FROM deliveries WHERE state = 'dead' {where}"
                                     " ORDER BY id LIMIT ? OFFSET ?", (*args, limit, offset)))

    def get(self, row_id: int) -> Row | None:
        rows = _rows(self.db.execute(f"SELECT {COLUMNS} FROM deliveries WHERE id = ?", (row_id,)))
        return rows[0] if rows else None

    def retry(self, ids: list[int] | None = None, endpoint: str | None = None) -> int:
        """Queue dead letters again (as new rows: they go to the back of their lane)."""
        cond, args = self._select_dead(ids, endpoint)
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            rows = self.db.execute(f"SELECT id, endpoint, event_id, bot, type, body, created, event_ts FROM deliveries"
                                   f" WHERE state = 'dead' {cond} ORDER BY id", args).fetchall()
            for row_id, ep, event_id, bot, typ, body, created, event_ts in rows:
                self.db.execute("DELETE FROM deliveries WHERE id = ?", (row_id,))
                self.db.execute("INSERT INTO deliveries (endpoint, event_id, bot, type, body, next_at, created, "
                                "event_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (ep, event_id, bot, typ, body, now, created, event_ts))
            self._count("requeued", len(rows))  # a running gateway re-reads its lanes when this moves
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(rows)

    def purge(self, ids: list[int] | None = None, endpoint: str | None = None) -> int:
        cond, args = self._select_dead(ids, endpoint)
        return self.db.execute(f"DELETE FROM deliveries WHERE state = 'dead' {cond}", args).rowcount

    @staticmethod
    def _select_dead(ids: list[int] | None, endpoint: str | None) -> tuple[str, tuple[Any, ...]]:
        cond, args = "", ()
        if ids:
            cond += f" AND id IN ({', '.join('?' * len(ids))})"
            args += tuple(ids)
        if endpoint:
            cond += " AND endpoint = ?"
            args += (endpoint,)
        return cond, args

    def depth(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: pending and dead counts, and the oldest pending delivery's creation time."""
        out: dict[str, dict[str, Any]] = {}
        for endpoint, state, count, oldest in self.db.execute(
                "SELECT endpoint, state, COUNT(*), MIN(created) FROM deliveries GROUP BY endpoint, state"):
            entry = out.setdefault(endpoint, {"pending": 0, "dead": 0, "oldest_pending": None})
            entry[state] = count
            if state == "pending":
                entry["oldest_pending"] = oldest
        return out

    def paused(self) -> dict[str, tuple[float | None, str | None]]:
        return {name: (at, reason) for name, at, reason in
                self.db.execute("SELECT name, paused_at, reason FROM endpoints WHERE paused = 1")}

    def set_paused(self, name: str, paused: bool, reason: str | None = None) -> None:
        self.db.execute("INSERT INTO endpoints (name, paused, paused_at, reason) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, paused_at = excluded.paused_at,"
                        " reason = excluded.reason", (name, int(paused), time.time() if paused else None, reason))


