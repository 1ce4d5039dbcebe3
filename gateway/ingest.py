"""From the tap to the hub: per bot, in order, with seq gaps filled from the bot's history.

A message is handled at once, in the tap reader's batch, unless its bot is busy recovering a
gap (a control ``history`` call) or already has messages waiting: then it goes to that bot's
queue and task, so recovering one bot's gap never holds up another bot, and a bot's messages
keep their order either way. A worker numbers its messages from 0 per process (pid); the
gateway keeps, per bot, the last (pid, seq) it saw, and persists the last *event* it stored
(the outbox's cursors), so a restarted gateway knows where it stopped.

A gap is: a seq jump within a worker, a new worker whose first message is not seq 0, a new
worker when the old one ended without a ``bye``, or the tap's welcome after the gateway (or
the supervisor) started. Then the history (oldest first, each entry with pid and seq) is read
and every event after the cursor and before the message that revealed the gap is published
first, flagged ``recovered``. When the history no longer holds the cursor (it rolled over, or
belongs to a newer supervisor) the gap is reported as a ``gateway`` event of type
``gap-unrecovered`` and counted in botvisor_gateway_gaps_unrecovered_total: never skipped in
silence. A bot the gateway has never seen starts where it is first seen.

In a ``[cluster]`` the messages come from every shard's tap, each tagged with its ``shard``: a
worker is named by (shard, pid), since pods' pid namespaces repeat pids; a state change's seq
counts per (shard, bot); a shard's welcome catches up that shard's bots, from its own history.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from protocol.client import ControlError
from protocol.messages import SUPERVISOR_BOT, Bye, Event, Message, Notice, StateChange

from .bridge import ControlBridge
from .envelope import event_id, from_history, to_json
from .hub import EventHub
from .metrics import GatewayMetrics
from .webhooks.store import Cursor

log = logging.getLogger("botvisor.gateway.ingest")

#: messages waiting per bot before the tap reader waits (back-pressure, not loss)
LANE_QUEUE = 10_000
CATCH_UP = object()
#: messages a bot's task handles before it lets the other tasks run
YIELD_EVERY = 32


@dataclass(slots=True)
class Seen:
    """The last message of a bot's worker stream the gateway handled."""

    pid: int
    seq: int
    ended: bool = False
    shard: int | None = None

    def same_worker(self, message: Message, shard: int | None) -> bool:
        return message.pid == self.pid and (shard == self.shard or self.shard is None)

    def gap_before(self, message: Message, shard: int | None) -> bool:
        """Did events come between this and ``message`` that the tap did not carry? (A new worker
        starts at seq 0; an old one that said bye has nothing after it.)"""
        if self.same_worker(message, shard):
            return message.seq > self.seq + 1
        return message.seq > 0 or not self.ended


class Ingest:
    def __init__(self, server: str, hub: EventHub, bridge: ControlBridge, metrics: GatewayMetrics,
                 cursors: dict[str, Cursor]) -> None:
        self.server = server
        self.hub = hub
        self.bridge = bridge
        self.metrics = metrics
        #: per bot: last event stored (persisted); where catch-up starts
        self.cursors = cursors
        self.seen: dict[str, Seen] = {b: Seen(c.pid, c.seq) for b, c in cursors.items()}
        self.state_seq: dict[tuple[int | None, str], int] = {}
        #: per shard (None: the one supervisor): the run (`instance`) of the supervisor that last welcomed us
        self.supervisor_pids: dict[int | None, int] = {}
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: bots whose task is handling an item (a recovery, or what queued behind one)
        self._busy: set[str] = set()
        self.on_reload: Any = None

    # -- from the tap ----------------------------------------------------------------------
    async def on_messages(self, messages: list[Message], shard: int | None = None) -> None:
        """A batch from the tap (of ``shard``), in tap order."""
        self.metrics.tap_messages.inc(len(messages))
        for message in messages:
            bot = message.bot
            queue = self._queues.get(bot)
            if bot in self._busy or (queue is not None and not queue.empty()) or self._slow(message, shard):
                # behind a recovery, or one that awaits more than the outbox: this bot's task, in order
                await self._queue(bot).put((message, shard))
                continue
            try:
                await self._handle(message, shard)
            except Exception:
                log.exception("bot %s: handling a message failed", bot)

    async def on_welcome(self, shard: int | None = None) -> None:
        """A supervisor (a shard's) has our subscription: catch its known bots up from its history."""
        self.metrics.tap_welcomes.inc()
        try:
            status = await self.bridge.call_shard(shard, "status", {})
        except ControlError as exc:
            log.warning("tap of %s welcomed but status failed (%s): no catch-up",
                        "the supervisor" if shard is None else f"shard {shard}", exc)
            return
        # which run of the supervisor: its pid repeats in a container, its instance does not
        self.supervisor_pids[shard] = int(status.get("instance") or status.get("pid") or 0)
        for bot in status.get("bots", []):
            bot_id = bot.get("bot_id")
            if bot_id in self.cursors:
                await self._queue(bot_id).put((CATCH_UP, shard))

    def _queue(self, bot: str) -> asyncio.Queue[Any]:
        queue = self._queues.get(bot)
        if queue is None:
            queue = self._queues[bot] = asyncio.Queue(LANE_QUEUE)
            self._tasks[bot] = asyncio.get_running_loop().create_task(self._run(bot, queue), name=f"ingest {bot}")
        return queue

    async def _run(self, bot: str, queue: asyncio.Queue[Any]) -> None:
        streak = 0
        while True:
            item = await queue.get()
            self._busy.add(bot)
            streak += 1
            try:
                if streak >= YIELD_EVERY:  # a non-empty queue's get() never yields: let others run
                    streak = 0
                    await asyncio.sleep(0)
                message, shard = item
                if message is CATCH_UP:
                    await self._catch_up(bot, shard)
                else:
                    await self._handle(message, shard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bot %s: handling a message failed", bot)
            finally:
                if queue.empty():
                    self._busy.discard(bot)

    # -- per bot, in order -----------------------------------------------------------------
    def _slow(self, message: Message, shard: int | None = None) -> bool:
        """Would handling ``message`` wait for more than the outbox: the bot's history (a gap, see
        _handle) or a reload?"""
        if isinstance(message, Notice):
            return message.message.startswith("reloaded ")
        if isinstance(message, StateChange) or message.bot == SUPERVISOR_BOT:
            return False
        seen = self.seen.get(message.bot)
        return seen is not None and seen.gap_before(message, shard)

    async def _handle(self, message: Message, shard: int | None = None) -> None:
        if isinstance(message, Notice) or message.bot == SUPERVISOR_BOT:
            await self.hub.publish(to_json(message, shard))
            if isinstance(message, Notice) and message.message.startswith("reloaded ") and self.on_reload:
                await self.on_reload()
            return
        if isinstance(message, StateChange):
            last = self.state_seq.get((shard, message.bot))
            if last is not None and message.seq > last + 1:
                await self._unrecovered(message.bot, f"{message.seq - last - 1} state change(s) before seq "
                                        f"{message.seq} were lost on the tap", {"stream": "state"}, shard)
            self.state_seq[(shard, message.bot)] = message.seq
            await self.hub.publish(to_json(message, shard))
            return
        bot = message.bot
        seen = self.seen.get(bot)
        if seen is not None:
            if seen.same_worker(message, shard) and message.seq <= seen.seq:
                return  # already published (recovered from the history a moment ago)
            if seen.gap_before(message, shard):
                await self._recover(bot, seen, message, shard)
        self.seen[bot] = Seen(message.pid, message.seq, isinstance(message, Bye), shard)
        body = to_json(message, shard)
        if isinstance(message, Event):
            body["_cursor"] = Cursor(self.supervisor_pids.get(shard, 0), message.pid, message.seq, message.ts)
        await self.hub.publish(body)

    async def _catch_up(self, bot: str, shard: int | None) -> None:
        seen = self.seen.get(bot)
        if seen is not None:
            await self._recover(bot, seen, None, shard)

    async def _recover(self, bot: str, seen: Seen, upto: Message | None, shard: int | None = None) -> None:
        """Publish the history's events after ``seen`` and before ``upto`` (None: the end), from the
        history of ``shard``: the shard whose tap showed the gap."""
        try:
            entries = (await self.bridge.call_shard(shard, "history", {"bot": bot}))["events"]
        except (ControlError, KeyError, TypeError) as exc:
            await self._unrecovered(bot, f"the history could not be read ({exc})", self._range(seen, upto), shard)
            return
        entries = [e for e in entries if isinstance(e, dict) and e.get("seq", -1) >= 0]
        start = None
        for i, entry in enumerate(entries):
            if entry["pid"] == seen.pid and entry["seq"] <= seen.seq:
                start = i
        cursor = self.cursors.get(bot)
        same_supervisor = cursor is None or cursor.supervisor in (0, self.supervisor_pids.get(shard, 0))
        limit = self._history_limit(bot)
        if start is None:
            # the cursor's own entry is not there: complete only when nothing was evicted (the
            # history is not full) and it is this supervisor's history (it knew the old worker)
            complete = same_supervisor and len(entries) < limit
            after = [e for e in entries if not (e["pid"] == seen.pid and e["seq"] <= seen.seq)]
        else:
            complete = True
            after = entries[start + 1:]
        if upto is not None:
            for i, entry in enumerate(after):
                if entry["pid"] == upto.pid and entry["seq"] >= upto.seq:
                    after = after[:i]
                    break
        if not complete:
            await self._unrecovered(bot, "the bot's history no longer holds the events after the last one "
                                    "the gateway stored", self._range(seen, upto), shard)
        for entry in after:
            body = from_history(self.server, bot, entry, shard)
            body["_cursor"] = Cursor(self.supervisor_pids.get(shard, 0), entry["pid"], entry["seq"], entry["timestamp"])
            self.seen[bot] = Seen(entry["pid"], entry["seq"], shard=shard)
            await self.hub.publish(body)
        if after:
            self.metrics.recovered.labels(bot).inc(len(after))
            log.info("bot %s: %d event(s) recovered from the history", bot, len(after))

    def _history_limit(self, bot: str) -> int:
        try:
            return int(self.bridge.config.bot(bot).event_history)
        except KeyError:
            return 0

    @staticmethod
    def _range(seen: Seen, upto: Message | None) -> dict[str, Any]:
        span: dict[str, Any] = {"after": {"pid": seen.pid, "seq": seen.seq}}
        if upto is not None:
            span["before"] = {"pid": upto.pid, "seq": upto.seq}
        return span

    async def _unrecovered(self, bot: str, reason: str, data: dict[str, Any], shard: int | None = None) -> None:
        self.metrics.unrecovered.labels(bot).inc()
        log.warning("bot %s: gap not recovered: %s", bot, reason)
        await self.publish_gateway("gap-unrecovered", bot, {"reason": reason, **data}, shard)

    async def publish_gateway(self, what: str, bot: str, data: dict[str, Any], shard: int | None = None) -> None:
        """A gateway event (kind ``gateway``): on the stream and to webhooks that want ``gateway``.
        ``shard``: the shard the event is about (a gap on its tap), in a [cluster]."""
        now = time.time()
        body = {"kind": "gateway", "server": self.server, "bot": bot, "pid": 0, "seq": 0,
                "ts": now, "type": "gateway", "event": what, "data": {"event": what, **data},
                "id": event_id(self.server, bot, "gateway", 0, now, shard) + uuid.uuid4().hex[:8]}
        if shard is not None:
            body["shard"] = shard
        await self.hub.publish(body)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
