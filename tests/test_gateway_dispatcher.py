"""The dispatcher and the outbox in one process against a real loopback receiver: per-bot order
under load, rows handed to lanes without re-reading the table, and re-queued dead letters found."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from gateway.metrics import GatewayMetrics
from gateway.webhooks.dispatcher import Dispatcher
from gateway.webhooks.outbox import Outbox
from protocol.gateway_config import WebhookConfig, WebhookRetry

from .gateway_harness import SECRET, Receiver, independent_verify


def envelope(bot: str, i: int) -> dict:
    return {"id": f"evt_{bot}_{i}", "server": "t", "bot": bot, "type": "message-upsert",
            "timestamp": time.time(), "seq": i, "pid": 1, "data": {"n": i}}


@contextlib.asynccontextmanager
async def dispatching(tmp_path, url: str, limit: int = 100_000):
    """An outbox and a dispatcher delivering it to one endpoint ``r`` at ``url``, stopped after."""
    outbox = Outbox(tmp_path / "o.sqlite3", limit)

    async def notify(*_):
        return None

    dispatcher = Dispatcher(outbox, GatewayMetrics(), notify, tmp_path)
    await dispatcher.apply([WebhookConfig(url=url, name="r", secret=SECRET)])
    dispatcher.start()
    try:
        yield outbox
    finally:
        await dispatcher.stop()
        outbox.close()


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
            # distinct events: a repeat (there must be none, below) would otherwise end the wait early
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
    # every answer is a 200 well inside the timeout: a repeat here was a row delivered and then
    # re-read as pending by a lane (the poller's first look at the table re-reads every lane)
    assert len(set(ids)) == 500 and len(ids) == 500, f"{len(ids) - 500} repeat(s) of a delivered event"
    assert reads <= 20, f"{reads} table reads for 500 deliveries: lanes should be handed their rows"


def test_a_dead_letter_queued_again_is_found_and_delivered(tmp_path):
    state = {"status": 400}
    receiver = Receiver(lambda n, r: (state["status"], {}, 0.0)).start()

    async def scenario() -> None:
        async with dispatching(tmp_path, receiver.url) as outbox:
            for i in range(3):
                await outbox.write(envelope("b", i), ["r"], None)
            await until(lambda: len(outbox.reader.dead()) == 3, 10, "3 dead letters")
            state["status"] = 200
            for i in range(3, 6):  # newer events keep flowing meanwhile
                await outbox.write(envelope("b", i), ["r"], None)
            await until(lambda: len(receiver.accepted()) == 3, 10, "the 3 newer events")
            assert await outbox.run(outbox.store.retry) == 3
            await until(lambda: len(receiver.accepted()) == 6, 10, "the 3 re-queued ones too")

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    assert [r.json["seq"] for r in receiver.accepted()] == [3, 4, 5, 0, 1, 2]


def test_a_lane_re_reading_the_table_while_a_delivery_commits_does_not_send_it_again(tmp_path):
    """A lane re-reads its rows (a reload, the CLI's retry, the poller's first look) on the reader
    thread; a read whose snapshot predates the commit that deleted a delivered row, answered
    after that commit, must not put the row back in the lane: it was delivered once already."""
    receiver = Receiver(lambda n, r: (200, {}, 0.3 if r.json["seq"] == 1 else 0.0)).start()

    async def scenario() -> None:
        outbox = Outbox(tmp_path / "o.sqlite3", 100_000)
        original = outbox.read
        release = threading.Event()
        race = {"armed": False, "reads": 0}

        async def late(fn, *args):
            result = await original(fn, *args)
            if getattr(fn, "__name__", "") == "lane" and race["armed"]:
                race["armed"] = False
                race["reads"] += 1
                # the read's snapshot still has the delivered row: its delete commits now, and
                # is handled by the loop before this answer is
                release.set()
                await until(lambda: not outbox.finishing, 10, "the delivered row's commit")
            return result

        outbox.read = late  # type: ignore[method-assign]

        async def notify(*_):
            return None

        dispatcher = Dispatcher(outbox, GatewayMetrics(), notify, tmp_path)
        await dispatcher.apply([WebhookConfig(url=receiver.url, name="r", secret=SECRET)])
        try:
            await outbox.write(envelope("b", 0), ["r"], None)
            await outbox.write(envelope("b", 1), ["r"], None)  # its receiver answers after 0.3 s
            lanes = dispatcher.endpoints["r"].lanes
            await until(lambda: "b" in lanes and lanes["b"].busy and lanes["b"].buffer[0].event_id == "evt_b_1",
                        10, "the first delivery done, the second in flight")
            await until(lambda: not outbox.finishing, 10, "the first one's delete committed")
            blocked = asyncio.ensure_future(outbox.run(release.wait, 10))  # hold the writer
            await until(lambda: bool(outbox.finishing), 10, "the second delivery answered, its delete held")
            race["armed"] = True
            lanes["b"].resync()
            await until(lambda: race["reads"] == 1, 10, "the lane's re-read")
            await blocked
            await asyncio.sleep(0.5)  # what a wrongly re-queued row would take to be sent again
        finally:
            await dispatcher.stop()
            outbox.close()

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    ids = [r.headers["botvisor-event-id"] for r in receiver.accepted()]
    assert ids == ["evt_b_0", "evt_b_1"], ids


def test_a_receivers_cookies_are_never_sent_back(tmp_path):
    # each delivery stands alone: a session cookie set by a receiver (or a proxy in front of it)
    # must not ride along on the next event, to it or to anyone sharing its host
    receiver = Receiver(lambda n, r: (200, {"Set-Cookie": "session=abc123; Path=/"}, 0.0)).start()

    async def scenario() -> None:
        # by name: a cookie jar refuses cookies from a bare IP address anyway
        async with dispatching(tmp_path, receiver.url.replace("127.0.0.1", "localhost")) as outbox:
            for i in range(3):
                await outbox.write(envelope("b0", i), ["r"], None)
            await until(lambda: len(receiver.accepted()) == 3, 30, "3 deliveries")

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    got = receiver.accepted()
    assert [r.json["seq"] for r in got] == [0, 1, 2]
    assert not [r.headers["cookie"] for r in got if "cookie" in r.headers], "a receiver's cookie was sent back"
