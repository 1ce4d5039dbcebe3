"""The in-process event hub: one ordered feed of the fleet's messages, many subscribers.

The ingest (gateway/ingest.py) publishes every tap message, gap-checked and in per-bot order,
plus the gateway's own notices (kind ``gateway``). Two kinds of subscriber:

- a *sink* (the webhooks' outbox) is awaited for each message before the next is published:
  nothing is lost and back-pressure reaches the tap;
- a *subscription* (a WebSocket client, a dashboard page) gets a bounded queue; when it is
  full, messages for it are dropped and counted, and the client sees the gap in ``seq`` and in
  the ``dropped`` count of its next message. A slow browser never slows the webhooks.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .envelope import message_type

Sink = Callable[[dict[str, Any]], Awaitable[None]]
#: a bot in these states has no worker showing a QR or pair code any more
GONE = ("stopping", "stopped", "backoff", "failed")


@dataclass(frozen=True, slots=True)
class Filter:
    """Bot globs, types (event types, ``state``, kinds such as ``heartbeat``) and shards; empty: all."""

    bots: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    allowed: Callable[[str], bool] | None = None
    #: in a [cluster]: only what these shards' taps carried (empty: every shard)
    shards: tuple[int, ...] = ()

    def matches(self, body: dict[str, Any]) -> bool:
        bot = body.get("bot", "")
        if self.allowed is not None and body.get("kind") != "notice" and not self.allowed(bot):
            return False
        if self.shards and body.get("shard") not in self.shards:
            return False
        if self.bots and not any(fnmatch.fnmatchcase(bot, g) for g in self.bots):
            return False
        if self.types and message_type(body) not in self.types and body.get("kind") not in self.types:
            return False
        return True


@dataclass(eq=False)
class Subscription:
    hub: EventHub
    filter: Filter
    maxsize: int
    queue: asyncio.Queue[dict[str, Any]] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.maxsize)

    def offer(self, body: dict[str, Any]) -> None:
        if not self.filter.matches(body):
            return
        try:
            self.queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pairing_step(known: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any] | None:
    """What a bot is showing to pair, after ``body``: its last connection-update with a qr or pair
    code, holding on to the life's other one (a QR changes every few seconds, the pair code comes
    once per life, after the first QR), or None once it opens or closes, or its worker is gone.

    The one rule for the hub and for a replay of the bot's history (gateway/api/pairing.py).
    """
    if message_type(body) == "state":
        state = body.get("state") or (body.get("data") or {}).get("state")  # a tap message, or a history entry
        return None if state in GONE else known
    if body.get("type") != "connection-update":
        return known
    data = body.get("data") or {}
    if data.get("qr") or data.get("pair_code"):
        if known is not None and known.get("pid") == body.get("pid"):  # a new worker shows its own code
            data = {**data, **{k: known["data"][k] for k in ("qr", "pair_code")
                               if not data.get(k) and known["data"].get(k)}}
        return {**body, "data": data}
    if data.get("connection") == "open" or (body.get("kind") == "event" and data.get("connection") == "close"):
        return None
    return known


class EventHub:
    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._subscriptions: set[Subscription] = set()
        #: per bot: its pairing in this worker's life (see pairing_step), for the pairing endpoints
        self.pairing: dict[str, dict[str, Any]] = {}
        self.published = 0

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def subscribe(self, filter: Filter | None = None, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, filter or Filter(), maxsize)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    async def publish(self, body: dict[str, Any]) -> None:
        self._remember(body)
        for sink in self._sinks:
            await sink(body)
        self.published += 1
        for sub in list(self._subscriptions):
            sub.offer(body)

    async def publish_many(self, bodies: Iterable[dict[str, Any]]) -> None:
        for body in bodies:
            await self.publish(body)

    def _remember(self, body: dict[str, Any]) -> None:
        bot = body.get("bot")
        if bot is None:
            return
        known = pairing_step(self.pairing.get(bot), body)
        if known is None:
            self.pairing.pop(bot, None)
        else:
            self.pairing[bot] = known
