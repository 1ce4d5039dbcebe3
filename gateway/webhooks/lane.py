"""A lane: one bot's deliveries to one endpoint, attempted strictly one after another."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from .store import Row

if TYPE_CHECKING:
    from .dispatcher import Endpoint

log = logging.getLogger("botvisor.gateway.webhooks")

#: the longest a lane sleeps before looking at its head again, seconds
POLL = 1.0
#: seconds an idle lane lingers before its task ends
IDLE = 30.0
#: rows a lane reads from the table at once
LOAD = 500


async def first_of(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class Lane:
    """One bot's deliveries to one endpoint, strictly one after another.

    Rows this process stores are handed to the lane as they are committed (``offer``), so a
    lane in step with the table never reads it; it reads the table when it starts, when a read
    came back full (``LOAD`` rows), and when another process re-queued rows (``resync``).
    """

    def __init__(self, endpoint: Endpoint, bot: str) -> None:
        self.endpoint = endpoint
        self.bot = bot
        self.buffer: deque[Row] = deque()
        self.last_id = 0
        #: the buffer holds every pending row of this lane up to last_id, and offers keep it so
        self.synced = False
        self.loading = False
        self._held: list[Row] = []
        self.wake = asyncio.Event()
        self.busy = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"lane {endpoint.name}/{bot}")

    def offer(self, row: Row) -> None:
        if self.loading:
            self._held.append(row)
        elif self.synced and row.id > self.last_id:
            self.buffer.append(row)
            self.last_id = row.id
        self.wake.set()

    def resync(self) -> None:
        """Rows were queued by someone else (a retry): read the whole lane again."""
        self.synced = False
        self.last_id = 0
        self.wake.set()

    async def _load(self) -> None:
        outbox = self.endpoint.dispatcher.outbox
        self.loading, self._held = True, []
        try:
            rows, full = await outbox.pending(self.endpoint.name, self.bot, self.last_id, LOAD)
        finally:
            self.loading = False
        have = {r.id for r in self.buffer}
        fresh = {r.id: r for r in rows if r.id not in have}
        if not full:  # the read saw every committed row: what was offered meanwhile follows it
            fresh.update((r.id, r) for r in self._held if r.id not in have)
        self._held = []
        if fresh:
            head = [self.buffer.popleft()] if self.busy and self.buffer else []
            merged = sorted([*self.buffer, *fresh.values()], key=lambda r: r.id)
            self.buffer = deque(head + merged)
            self.last_id = max(self.last_id, self.buffer[-1].id)
        self.synced = not full

    async def _run(self) -> None:
        ep = self.endpoint
        try:
            while True:
                if not self.synced and not self.busy:
                    self.wake.clear()
                    await self._load()
                    continue
                if not self.buffer:
                    self.wake.clear()
                    try:
                        await asyncio.wait_for(self.wake.wait(), IDLE)
                    except TimeoutError:
                        if not self.buffer and ep.lanes.get(self.bot) is self:
                            del ep.lanes[self.bot]
                            return
                    continue
                if ep.paused or self.busy:
                    self.wake.clear()
                    await first_of(ep.resumed, self.wake)
                    continue
                wait = self.buffer[0].next_at - time.time()
                if wait > 0:
                    await asyncio.sleep(min(wait, POLL))
                    continue
                self.busy = True
                try:
                    await ep.process(self)
                finally:
                    self.busy = False
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook %s lane %s failed; it restarts on the next event", ep.name, self.bot)
            if ep.lanes.get(self.bot) is self:
                del ep.lanes[self.bot]
