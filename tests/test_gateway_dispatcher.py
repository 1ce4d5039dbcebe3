"""The dispatcher and the outbox in one process against a real loopback receiver: per-bot order
under load, rows handed to lanes without re-reading the table, and re-queued dead letters found."""

from __future__ import annotations

import asyncio
import time

from gateway.metrics import GatewayMetrics
from gateway.webhooks.dispatcher import Dispatcher
from gateway.webhooks.outbox import Outbox
from protocol.gateway_config import WebhookConfig, WebhookRetry

from .gateway_harness import SECRET, Receiver, independent_verify


def envelope(bot: str, i: int) -> dict:
    return {"id": f"evt_{bot}_{i}", "server": "t", "bot": bot, "type": "message-upsert",
            "timestamp": time.time(), "seq": i, "pid": 1, "data": {"n": i}}


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_lanes_deliver_each_bot_in_order_without_reading_the_table_per_event(tmp_path):
    receiver = Receiver(lambda n, r: (200, {}, 0.0)).start()

    async def scenario() -> int:
        outbox = Outbox(tmp_path / "o.sqlite3", 100_000)
        reads = 0
        original = outbox.read

        async def counting(fn, *args):
            nonlocal reads
            if getattr(fn, "__name__", "") == "lane":
                reads += 1
            return await original(fn, *args)

        outbox.read = counting  # type: ignore[method-assign]

        async def notify(*_):
            return None

        dispatcher = Dispatcher(outbox, GatewayMetrics(), notify, tmp_path)
        hook = WebhookConfig(url=receiver.url, name="r", secret=SECRET, retry=WebhookRetry(initial=0.05))
        await dispatcher.apply([hook])
        dispatcher.start()
        try:
            async def bot(name: str) -> None:
                for i in range(100):
                    await outbox.write(envelope(name, i), ["r"], None)

            await asyncio.gather(*(bot(f"b{k}") for k in range(5)))
            # at-least-once: a retry after an attempt whose answer was lost (a client timeout on a
            # loaded machine) repeats the event under its id; count distinct events
            await until(lambda: len({r.headers["botvisor-event-id"] for r in receiver.accepted()}) == 500, 30,
                        "500 deliveries")
        finally:
            await dispatcher.stop()
            outbox.close()
        return reads

    try:
        reads = asyncio.run(scenario())
    finally:
        receiver.stop()
    got = receiver.accepted()
    assert all(independent_verify(SECRET, r.body, r.headers["botvisor-signature"]) for r in got)
    for k in range(5):
        seqs = [r.json["seq"] for r in got if r.json["bot"] == f"b{k}"]
        assert list(dict.fromkeys(seqs)) == list(range(100)), "each bot's events in seq order"
        assert seqs == sorted(seqs), "a repeat comes right after its original, never after a later event"
    ids = [r.headers["botvisor-event-id"] for r in got]
    assert len(set(ids)) == 500 and len(ids) - 500 <= 5, f"{len(ids) - 500} repeats: retries must stay rare"
    assert reads <= 20, f"{reads} table reads for 500 deliveries: lanes should be handed their rows"


def test_a_dead_letter_queued_again_is_found_and_delivered(tmp_path):
    state = {"status": 400}
    receiver = Receiver(lambda n, r: (state["status"], {}, 0.0)).start()

    async def scenario() -> None:
        outbox = Outbox(tmp_path / "o.sqlite3", 100_000)

        async def notify(*_):
            return None

        dispatcher = Dispatcher(outbox, GatewayMetrics(), notify, tmp_path)
        await dispatcher.apply([WebhookConfig(url=receiver.url, name="r", secret=SECRET)])
        dispatcher.start()
        try:
            for i in range(3):
                await outbox.write(envelope("b", i), ["r"], None)
            await until(lambda: len(outbox.reader.dead()) == 3, 10, "3 dead letters")
            state["status"] = 200
            for i in range(3, 6):  # newer events keep flowing meanwhile
                await outbox.write(envelope("b", i), ["r"], None)
            await until(lambda: len(receiver.accepted()) == 3, 10, "the 3 newer events")
            assert await outbox.run(outbox.store.retry) == 3
            await until(lambda: len(receiver.accepted()) == 6, 10, "the 3 re-queued ones too")
        finally:
            await dispatcher.stop()
            outbox.close()

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    assert [r.json["seq"] for r in receiver.accepted()] == [3, 4, 5, 0, 1, 2]
