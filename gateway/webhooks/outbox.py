"""The durable outbox from asyncio: every delivery committed to SQLite (store.py) before its
first attempt, without the event loop waiting on the disk.

A batch's statements run on the loop itself, in one transaction: handed to a thread, each
batch waited for that thread to get the GIL back from the busy loop, and the hop was most of
an event's time in the gateway (docs/webhooks.md, "Measured"). What can wait on the disk goes
to a thread of its own (the sync thread): the commit under ``outbox_sync = "full"`` (its
fsync), the log's checkpoint (SQLite's automatic one is off on this connection, so it never
runs inside a commit on the loop), and a batch that met another process's write lock (the
CLI's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from .store import Busy, Cursor, Row, Store

T = TypeVar("T")

#: writes queued before a writer waits for its commit (back-pressure)
BACKLOG = 5000
#: seconds between attempts to commit a batch that failed
RETRY_COMMIT = 0.5
#: seconds an outcome (a delivered row's delete, a retry's schedule) waits for company before it
#: is committed alone: at a low rate, one commit per event instead of two. A crash inside this
#: window sends the delivered event again, with its id (at least once, as after any crash).
OUTCOME_DELAY = 0.05
#: writes in one transaction at most: the loop runs nothing else while a batch's statements
#: do, so a backlog is taken a part at a time
MAX_BATCH = 500
#: seconds between checkpoints while batches are committed (SQLite's own runs every 1,000
#: pages, ~4 MB: about every few seconds at 1,000 events/s). The log file keeps its largest size
#: once reused from its start, so its size cannot say when one is due.
CHECKPOINT_S = 1.0

log = logging.getLogger("botvisor.gateway.outbox")


class Outbox:
    """The Store from asyncio. Writes are group-committed: every insert, delete and update
    queued while a commit runs goes into the next transaction, so one commit (one fsync under
    "full") covers a whole batch. Three connections: ``ingest`` for the batches (it never
    waits for a lock), ``store`` on the writer thread for operators' actions (retry, purge,
    pause), ``reader`` on a reader thread for lanes, depth and dead letters (in WAL mode reads
    never wait for the writer)."""

    def __init__(self, path: Path, limit: int, sync: str = "full") -> None:
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="outbox-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="outbox-read")
        self.store: Store = self._writer.submit(Store, path, limit, sync).result()
        self.reader: Store = self._reader.submit(Store, path, limit, sync).result()
        self.ingest = Store(path, limit, sync, wait=False)
        #: the ingest connection's waits: its commits under "full", its checkpoints, a batch that
        #: met another's lock. Not the writer thread: an operator's write queued there could wait
        #: for the lock of a batch whose commit would be queued behind it.
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="outbox-sync")
        self._checkpointed = time.monotonic()
        #: the commit's fsync goes to the sync thread; without one it is done on the loop
        self._commit_off_loop = sync == "full"
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
        return await _on(self._writer, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` of ``self.reader`` on the reader thread."""
        return await _on(self._reader, fn, *args)

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
                ops, self._ops = self._ops[:MAX_BATCH], self._ops[MAX_BATCH:]
                try:
                    created, dropped = await self._commit([(k, a) for k, a, _ in ops])
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

    async def _commit(self, ops: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Row], int]:
        ingest = self.ingest
        now = time.monotonic()
        if now - self._checkpointed > CHECKPOINT_S:
            self._checkpointed = now
            try:
                await _on(self._syncer, ingest.checkpoint)
            except Exception as exc:  # the log only grows meanwhile; a later batch tries again
                log.warning("outbox checkpoint failed: %s", exc)
        try:
            done = ingest.stage(ops)
        except Busy:  # the CLI's transaction, a moment: wait for it on the sync thread
            return await _on(self._syncer, ingest.apply_waiting, ops)
        if self._commit_off_loop:
            await _on(self._syncer, ingest.commit)
        else:
            ingest.commit()
            await asyncio.sleep(0)  # a commit awaited on a thread let the loop run; so does this one
        return done

    def on_written(self, created: list[Row], dropped: int) -> None:
        """Replaced by the dispatcher: wake the lanes of the new rows."""

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write is committed (a graceful stop)."""
        deadline = time.monotonic() + timeout
        while (self._ops or self._flushing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._syncer.submit(self.ingest.close).result()
        self._reader.submit(self.reader.close).result()
        self._writer.submit(self.store.close).result()
        for pool in (self._syncer, self._reader, self._writer):
            pool.shutdown(wait=True)


async def _on(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``pool``'s thread, awaited."""
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
