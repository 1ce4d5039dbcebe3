"""Delivering the outbox: one lane per (endpoint, bot), each its own asyncio task.

Ordering: a lane attempts a delivery only after the one before it was answered 2xx or moved
to the dead letters, so an endpoint gets each bot's events in the order the gateway stored
them (the bot's seq order; recovered events before the one that revealed the gap). Lanes of
other bots, and every other endpoint (its own HTTP client and connection pool), go on while
one lane waits: a slow or dead endpoint delays nobody else. At most ``concurrency`` attempts
are in flight per endpoint.

Outcomes (one table, ``classify``): 2xx delivered; 408, 429, 5xx, timeouts and connection
errors retried on the curve (429 and 503 after their Retry-After when given); any other 4xx
or a redirect goes straight to the dead letters. A retryable failure after the last attempt
does too. An endpoint with no success for ``pause_after`` seconds is paused (lanes wait, a
gateway event says so); every ``probe_every`` seconds one real delivery probes it, and a
success, or an operator (`botvisor webhooks resume`, the API), resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from protocol.backoff import RestartPolicy, exponential_delay
from protocol.gateway_config import WebhookConfig, webhook_name

from ..metrics import GatewayMetrics
from .lane import Lane
from .outbox import Outbox
from .store import Row
from .outcomes import Outcome, classify
from .signing import HEADER, sign

log = logging.getLogger("botvisor.gateway.webhooks")

#: seconds between looks at the outbox for what another process changed (CLI retry, pause)
POLL = 1.0
USER_AGENT = "botvisor-gateway/1"

Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class Endpoint:
    def __init__(self, dispatcher: Dispatcher, name: str, config: WebhookConfig, secret: bytes) -> None:
        self.dispatcher = dispatcher
        self.name = name
        self.lanes: dict[str, Lane] = {}
        self.failing_since: float | None = None
        self.paused = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self._probe: asyncio.Task[None] | None = None
        self.client: aiohttp.ClientSession | None = None
        self.configure(config, secret)

    def configure(self, config: WebhookConfig, secret: bytes) -> None:
        """New settings (a reload): attempts from now on use them; queued rows stay."""
        old = self.client
        self.config, self.secret = config, secret
        self.policy = RestartPolicy(initial=config.retry.initial, factor=config.retry.factor, max=config.retry.max,
                                    jitter=config.retry.jitter)
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.concurrency, force_close=False),
            timeout=aiohttp.ClientTimeout(total=config.timeout), headers={"User-Agent": USER_AGENT},
            # a receiver's cookies are never sent back: each delivery stands alone
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        metrics = self.dispatcher.metrics
        #: the metrics' children, looked up once rather than per delivery
        self._attempts = {r: metrics.attempts.labels(self.name, r) for r in ("2xx", "3xx", "4xx", "5xx", "timeout",
                                                                               "error")}
        self._delivered = metrics.deliveries.labels(self.name, "delivered")
        self._dead = metrics.deliveries.labels(self.name, "dead")
        self._latency = metrics.latency.labels(self.name)
        if old is not None:
            asyncio.get_running_loop().create_task(old.close())

    def lane(self, bot: str) -> Lane:
        lane = self.lanes.get(bot)
        if lane is None or lane.task.done():
            lane = self.lanes[bot] = Lane(self, bot)
        return lane

    async def attempt(self, row: Row) -> Outcome:
        assert self.client is not None
        now = time.time()
        t = int(now)
        headers = {
            "Content-Type": "application/json",
            "Botvisor-Event-Id": row.event_id,
            "Botvisor-Delivery-Id": "dlv_" + os.urandom(12).hex(),
            "Botvisor-Delivery-Attempt": str(row.attempts + 1),
            HEADER: sign(self.secret, row.body, t),
        }
        async with self.semaphore:
            try:
                async with self.client.post(self.config.url, data=row.body, headers=headers,
                                            allow_redirects=False) as response:
                    await response.read()  # the connection goes back to the pool only once read
                    outcome = classify(response.status, response.headers.get("Retry-After"), None, now)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                outcome = classify(None, None, exc, now)
        (self._attempts.get(outcome.result) or self.dispatcher.metrics.attempts.labels(self.name, outcome.result)).inc()
        return outcome

    async def process(self, lane: Lane) -> None:
        """Attempt the lane's head once and record what happened."""
        row = lane.buffer[0]
        outcome = await self.attempt(row)
        now = time.time()
        outbox = self.dispatcher.outbox
        if outcome.ok:
            outbox.delivered(row.id)
            lane.buffer.popleft()
            self._delivered.inc()
            self._latency.observe(max(0.0, now - row.event_ts))
            self.failing_since = None
            if self.paused:
                await self.resume("a delivery succeeded")
            return
        attempts = row.attempts + 1
        dead = not outcome.retry or attempts >= self.config.retry.attempts
        delay = outcome.retry_after if outcome.retry_after is not None else exponential_delay(attempts - 1, self.policy)
        outbox.failed(row.id, attempts, now + delay, outcome.error, outcome.status, dead)
        if dead:
            lane.buffer.popleft()
            self._dead.inc()
            log.warning("webhook %s: %s for %s gave up after %d attempt(s): %s", self.name, row.bot, row.event_id,
                        attempts, outcome.error)
        else:
            lane.buffer[0] = replace(row, attempts=attempts, next_at=now + delay, last_error=outcome.error,
                                     last_status=outcome.status)
        if outcome.failing:
            if self.failing_since is None:
                self.failing_since = now
            elif not self.paused and now - self.failing_since >= self.config.pause_after:
                await self.pause(f"no successful delivery for {now - self.failing_since:.0f} s ({outcome.error})")

    async def pause(self, reason: str, by_operator: bool = False) -> None:
        if self.paused:
            return
        self.paused = True
        self.resumed.clear()
        await self.dispatcher.outbox.run(self.dispatcher.outbox.store.set_paused, self.name, True, reason)
        self.dispatcher.metrics.paused.labels(self.name).set(1)
        log.warning("webhook %s paused: %s", self.name, reason)
        await self.dispatcher.notify("webhook-paused", "@gateway", {"endpoint": self.name, "reason": reason})
        if not by_operator:
            self._probe = asyncio.get_running_loop().create_task(self._probing())

    async def resume(self, reason: str) -> None:
        if not self.paused:
            return
        self.paused = False
        self.failing_since = None
        self.resumed.set()
        if self._probe is not None and self._probe is not asyncio.current_task():
            self._probe.cancel()
        self._probe = None
        await self.dispatcher.outbox.run(self.dispatcher.outbox.store.set_paused, self.name, False, None)
        self.dispatcher.metrics.paused.labels(self.name).set(0)
        log.info("webhook %s resumed: %s", self.name, reason)
        await self.dispatcher.notify("webhook-resumed", "@gateway", {"endpoint": self.name, "reason": reason})

    async def _probing(self) -> None:
        while self.paused:
            await asyncio.sleep(self.config.probe_every)
            lane = next((lane for lane in self.lanes.values() if lane.buffer), None)
            if lane is not None and not lane.busy:
                lane.busy = True
                try:
                    await self.process(lane)
                finally:
                    lane.busy = False
                    lane.wake.set()

    async def stop(self) -> None:
        for lane in list(self.lanes.values()):
            lane.task.cancel()
        if self._probe is not None:
            self._probe.cancel()
        tasks = [lane.task for lane in self.lanes.values()] + ([self._probe] if self._probe else [])
        await asyncio.gather(*tasks, return_exceptions=True)
        self.lanes.clear()
        if self.client is not None:
            await self.client.close()


class Dispatcher:
    def __init__(self, outbox: Outbox, metrics: GatewayMetrics, notify: Notify, base: Path) -> None:
        self.outbox = outbox
        self.metrics = metrics
        self.notify = notify
        self.base = base
        self.endpoints: dict[str, Endpoint] = {}
        self.configs: list[tuple[str, WebhookConfig]] = []
        self._requeued = -1
        self._routes: dict[tuple[str, str], list[str]] = {}
        self._poller: asyncio.Task[None] | None = None
        outbox.on_written = self._written

    def routes(self, bot: str, event_type: str) -> list[str]:
        """The endpoints that want this bot's event of this type (remembered until a reload:
        matching globs is the costly part of storing an event)."""
        key = (bot, event_type)
        names = self._routes.get(key)
        if names is None:
            if len(self._routes) > 100_000:  # bots and types are bounded; be sure anyway
                self._routes.clear()
            names = self._routes[key] = [name for name, hook in self.configs if hook.wants(bot, event_type)]
        return names

    def secret(self, hook: WebhookConfig) -> bytes:
        if hook.secret_file:
            path = Path(hook.secret_file)
            return (path if path.is_absolute() else self.base / path).read_text().strip().encode()
        return (hook.secret or "").encode()

    async def apply(self, hooks: list[WebhookConfig]) -> None:
        """(Re)configure the endpoints; removed ones stop, their queued rows stay in the outbox."""
        configs = [(webhook_name(hook, i), hook) for i, hook in enumerate(hooks)]
        secrets = {name: self.secret(hook) for name, hook in configs}  # a missing file fails before any change
        wanted = dict(configs)
        for name in list(self.endpoints):
            if name not in wanted:
                await self.endpoints.pop(name).stop()
        paused = await self.outbox.read(self.outbox.reader.paused)
        for name, hook in configs:
            ep = self.endpoints.get(name)
            if ep is None:
                ep = self.endpoints[name] = Endpoint(self, name, hook, secrets[name])
                if name in paused:
                    ep.paused = True
                    ep.resumed.clear()
                    self.metrics.paused.labels(name).set(1)
                    ep._probe = asyncio.get_running_loop().create_task(ep._probing())
                else:
                    self.metrics.paused.labels(name).set(0)
            else:
                ep.configure(hook, secrets[name])
        self.configs = configs
        self._routes = {}
        # the re-queue count as of this scan: the poller re-reads the lanes only when it moves
        self._requeued = (await self.outbox.read(self.outbox.reader.counters)).get("requeued", 0)
        await self._scan()

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="outbox poll")

    def _written(self, created: list[Row], dropped: int) -> None:
        for row in created:
            ep = self.endpoints.get(row.endpoint)
            if ep is not None:
                ep.lane(row.bot).offer(row)
        if dropped:
            log.warning("outbox over its limit: %d delivery(ies) dropped", dropped)

    async def _scan(self) -> None:
        """Every lane with pending rows reads the table again (start, reload, a retry)."""
        for endpoint, bot, _ in await self.outbox.read(self.outbox.reader.lanes, 0):
            ep = self.endpoints.get(endpoint)
            if ep is not None:
                ep.lane(bot).resync()

    async def _poll(self) -> None:
        """Notice what another process (the CLI) changed: retried rows, pause, resume."""
        while True:
            await asyncio.sleep(POLL)
            try:
                requeued = (await self.outbox.read(self.outbox.reader.counters)).get("requeued", 0)
                if requeued != self._requeued:
                    self._requeued = requeued
                    await self._scan()
                paused = await self.outbox.read(self.outbox.reader.paused)
                for name, ep in self.endpoints.items():
                    if ep.paused and name not in paused:
                        await ep.resume("resumed by an operator")
                    elif not ep.paused and name in paused:
                        await ep.pause(paused[name][1] or "paused by an operator", by_operator=True)
            except Exception:
                log.exception("polling the outbox failed")

    async def resume(self, name: str) -> None:
        await self.endpoints[name].resume("resumed by an operator")

    async def pause(self, name: str) -> None:
        await self.endpoints[name].pause("paused by an operator", by_operator=True)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for ep in list(self.endpoints.values()):
            await ep.stop()
        self.endpoints.clear()
