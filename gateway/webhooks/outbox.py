"""The durable outbox: every delivery in SQLite before its first attempt.

One database in the gateway's data directory (WAL, ``synchronous=FULL``: a committed delivery
survives a crash and a power cut). All access goes through one thread, so the asyncio loop
never waits on the disk and writes from many bots batch into one transaction. The CLI
(``botvisor webhooks``) opens the same file; the running gateway sees its changes within a
second (dispatcher.py polls for them).

Tables: ``deliveries`` (pending and dead rows; a delivered row is deleted), ``cursors`` (per
bot, the last event written: where a restarted gateway resumes), ``endpoints`` (paused or
not) and ``counters`` (what the bound dropped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

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
#: writes queued before a writer waits for its commit (back-pressure)
BACKLOG = 5000
#: seconds between attempts to commit a batch that failed
RETRY_COMMIT = 0.5
#: seconds an outcome (a delivered row's delete, a retry's schedule) waits for company before it
#: is committed alone: at a low rate, one commit per event instead of two. A crash inside this
#: window sends the delivered event again, with its id (at least once, as after any crash).
OUTCOME_DELAY = 0.05

log = logging.getLogger("botvisor.gateway.outbox")


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


def connect(path: Path, sync: str = "full") -> sqlite3.Connection:
    """The outbox's database; ``sync`` is [gateway] outbox_sync (SQLite's ``synchronous``)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={SYNC[sync]}")
    db.execute("PRAGMA busy_timeout=10000")
    db.executescript(SCHEMA)
    return db


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    return [Row(*r) for r in cursor.fetchall()]


COLUMNS = ("id, endpoint, event_id, bot, type, body, state, attempts, next_at, created, event_ts, "
           "last_error, last_status")


class Store:
    """The synchronous operations, each one transaction (the CLI uses these directly)."""

    def __init__(self, path: Path, limit: int = 1_000_000, sync: str = "full") -> None:
        self.path = path
        self.limit = limit
        self.db = connect(path, sync)
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
        now = time.time()
        created: list[Row] = []
        cursors: dict[str, Cursor] = {}  # the batch's last cursor per bot is all that must be kept
        delivered = 0
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for kind, args in ops:
                if kind == "delivered":
                    self._total -= db.execute("DELETE FROM deliveries WHERE id = ?", args).rowcount
                    delivered += 1
                    continue
                if kind == "failed":
                    self._failed(*args)
                    continue
                envelope, endpoints, cursor = args
                if endpoints:
                    raw = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
                    for endpoint in endpoints:
                        cur = db.execute(
                            "INSERT OR IGNORE INTO deliveries (endpoint, event_id, bot, type, body, next_at, created,"
                            " event_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (endpoint, envelope["id"], envelope["bot"], envelope["type"], raw, now, now,
                             envelope["timestamp"]))
                        if cur.rowcount:
                            created.append(Row(int(cur.lastrowid), endpoint, envelope["id"], envelope["bot"],
                                               envelope["type"], raw, "pending", 0, now, now,
                                               envelope["timestamp"], None, None))
                if cursor is not None:
                    cursors[envelope["bot"]] = cursor
            if cursors:
                db.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?, ?)",
                               [(bot, c.supervisor, c.pid, c.seq, c.ts) for bot, c in cursors.items()])
            self._count("delivered", delivered)
            self._total += len(created)
            dropped = self._bound() if self._total > self.limit else 0
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return created, dropped

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

    def _failed(self, row_id: int, attempts: int, next_at: float, error: str, status: int | None,
                dead: bool) -> None:
        self.db.execute("UPDATE deliveries SET attempts = ?, next_at = ?, last_error = ?, last_status = ?, state = ?"
                        " WHERE id = ?", (attempts, next_at, error[:500], status, "dead" if dead else "pending",
                                          row_id))

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


class Outbox:
    """The Store from asyncio. Writes go to one writer thread and are group-committed: every
    insert, delete and update queued while a commit runs goes into the next transaction, so
    one fsync covers a whole batch and the loop never waits on the disk. Reads (lanes, depth,
    dead letters) use a second connection on a second thread: in WAL mode they never wait for
    the writer."""

    def __init__(self, path: Path, limit: int, sync: str = "full") -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="outbox-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="outbox-read")
        self.store: Store = self._writer.submit(Store, path, limit, sync).result()
        self.reader: Store = self._reader.submit(Store, path, limit, sync).result()
        self._ops: list[tuple[str, tuple[Any, ...], asyncio.Future[Any] | None]] = []
        self._flushing = False
        #: the timer that commits outcomes queued alone (OUTCOME_DELAY)
        self._delayed: asyncio.TimerHandle | None = None
        #: rows delivered or dead-lettered whose write is not committed yet (a lane re-reading
        #: the table must not take them for pending)
        self.finishing: set[int] = set()
        #: commits the loop has seen done; a read begun after commit n sees at least its effects
        self.commits = 0
        #: rows finished in a recent commit -> that commit's number, kept while a read begun
        #: before it is out (its snapshot may still show them pending)
        self._finished: dict[int, int] = {}
        #: snapshots (``commits`` when begun) of the lane reads out now
        self._reads: list[int] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the writer thread (operator actions: retry, purge, pause)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` of ``self.reader`` on the reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def pending(self, endpoint: str, bot: str, after: int, limit: int) -> tuple[list[Row], bool]:
        """A lane's pending rows after ``after`` (on the reader thread), less those this process
        delivered or dead-lettered meanwhile, and whether the read came back full. A read's
        snapshot can predate a commit whose result the loop handles before the read's: without
        this, a row delivered a moment ago would be taken for pending and sent again."""
        since = self.commits
        self._reads.append(since)
        try:
            rows = await self.read(self.reader.lane, endpoint, bot, after, limit)
            finished = self._finished
            return [r for r in rows if r.id not in self.finishing and finished.get(r.id, 0) <= since], \
                len(rows) == limit
        finally:
            self._reads.remove(since)
            self._forget()

    def _forget(self) -> None:
        """Drop what no read out now can still see as pending."""
        if not self._finished:
            return
        oldest = min(self._reads, default=self.commits)
        self._finished = {i: n for i, n in self._finished.items() if n > oldest}

    async def write(self, envelope: dict[str, Any], endpoints: list[str], cursor: Cursor | None) -> None:
        """Queue one message's deliveries for the next commit. Returns at once (the caller may
        go on to its next message: commits keep the queue's order, and a lane is handed a row
        only once it is committed) unless BACKLOG writes are waiting, then once this one is
        committed: back-pressure up to the tap, never loss."""
        if len(self._ops) < BACKLOG:
            self._queue("write", (envelope, endpoints, cursor), None)
            return
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue("write", (envelope, endpoints, cursor), future)
        await future

    def delivered(self, row_id: int) -> None:
        """Forget a delivered row (committed with the next batch: a crash before that means the
        event is delivered again, with the same id)."""
        self.finishing.add(row_id)
        self._queue("delivered", (row_id,), None)

    def failed(self, *args: Any) -> None:
        if args[-1]:  # dead
            self.finishing.add(args[0])
        self._queue("failed", args, None)

    def _queue(self, kind: str, args: tuple[Any, ...], future: asyncio.Future[Any] | None) -> None:
        self._ops.append((kind, args, future))
        if self._flushing:
            return  # the running flush takes it with the next batch
        if kind == "write":
            self._start_flush()
        elif self._delayed is None:
            self._delayed = asyncio.get_running_loop().call_later(OUTCOME_DELAY, self._start_flush)

    def _start_flush(self) -> None:
        if self._delayed is not None:
            self._delayed.cancel()
            self._delayed = None
        if not self._flushing and self._ops:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._ops:
                ops, self._ops = self._ops, []
                try:
                    created, dropped = await self.run(self.store.apply, [(k, a) for k, a, _ in ops])
                except Exception:  # a full or failing disk: keep the batch and try again, never drop it
                    log.exception("the outbox could not commit %d write(s); retrying", len(ops))
                    self._ops = ops + self._ops
                    await asyncio.sleep(RETRY_COMMIT)
                    continue
                self.commits += 1
                for kind, args, future in ops:
                    if future is not None and not future.done():
                        future.set_result(None)
                    if kind != "write" and args[0] in self.finishing:
                        self.finishing.discard(args[0])
                        if self._reads:  # a read out now may have begun before this commit
                            self._finished[args[0]] = self.commits
                self.on_written(created, dropped)
        finally:
            self._flushing = False

    def on_written(self, created: list[Row], dropped: int) -> None:
        """Replaced by the dispatcher: wake the lanes of the new rows."""

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write is committed (a graceful stop)."""
        deadline = time.monotonic() + timeout
        while (self._ops or self._flushing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._reader.submit(self.reader.close).result()
        self._writer.submit(self.store.close).result()
        self._reader.shutdown(wait=True)
        self._writer.shutdown(wait=True)
