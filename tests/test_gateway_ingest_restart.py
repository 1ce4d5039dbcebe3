"""The gateway's catch-up after a supervisor restart where the pid repeats (a container's pid 1)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gateway.ingest import Ingest
from gateway.metrics import GatewayMetrics
from protocol import Event, EventType, MessageUpsert


class Hub:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def publish(self, body: dict[str, Any]) -> None:
        self.bodies.append(body)


class Supervisor:
    """What the gateway asks the control socket: status and a bot's history."""

    def __init__(self, pid: int, instance: int, history: list[dict[str, Any]]) -> None:
        self.pid, self.instance, self.history = pid, instance, history
        self.history_reads = 0
        self.config = SimpleNamespace(bot=lambda bot: SimpleNamespace(event_history=100))

    async def call_shard(self, shard: int | None, command: str, args: dict[str, Any]) -> dict[str, Any]:
        if command == "status":
            return {"pid": self.pid, "instance": self.instance, "bots": [{"bot_id": "b1"}]}
        assert command == "history"
        self.history_reads += 1
        return {"events": self.history}


def message(pid: int, seq: int) -> Event:
    data = MessageUpsert(id=f"m{seq}", chat="1@s.whatsapp.net", sender="1@s.whatsapp.net", timestamp=1.0,
                         from_me=False, text="hi")
    return Event("srv", "b1", pid, seq, 1000.0 + seq, EventType.MESSAGE_UPSERT, data)


async def drain(ingest: Ingest) -> None:
    for _ in range(50):  # the bot's task runs the catch-up
        await asyncio.sleep(0)
    await ingest.stop()


def test_a_restarted_supervisor_with_the_same_pid_is_not_taken_for_the_old_one() -> None:
    async def scenario() -> list[dict[str, Any]]:
        # a first gateway run: supervisor pid 1, worker 100 up to seq 5, its cursor stored
        hub = Hub()
        before = Ingest("srv", hub, Supervisor(1, 111, []), GatewayMetrics(), {})
        await before.on_welcome()
        await before.on_messages([message(100, s) for s in range(6)])
        cursor = hub.bodies[-1]["_cursor"]
        await before.stop()
        # the pod restarts: a new supervisor, pid 1 again, whose history holds only its own
        # worker's events; what worker 100 sent after seq 5 is gone with the old supervisor
        hub = Hub()
        new_run = Supervisor(1, 222, [{"pid": 7, "seq": 0, "timestamp": 2000.0, "type": "message-upsert",
                                       "data": {}}])
        after = Ingest("srv", hub, new_run, GatewayMetrics(), {"b1": cursor})
        await after.on_welcome()
        await drain(after)
        return hub.bodies

    bodies = asyncio.run(scenario())
    gaps = [b for b in bodies if b.get("event") == "gap-unrecovered"]
    assert gaps, "a gap across a supervisor restart must be reported, not taken as complete"
    assert [b["seq"] for b in bodies if b.get("kind") == "event"] == [0]  # the new worker's event, recovered


def entry(pid: int, seq: int) -> dict[str, Any]:
    return {"pid": pid, "seq": seq, "timestamp": 1000.0 + seq, "type": "message-upsert", "data": {}}


def test_a_seq_gap_on_the_tap_is_filled_from_the_history_in_order() -> None:
    supervisor = Supervisor(1, 111, [entry(100, s) for s in range(5)])

    async def scenario() -> list[dict[str, Any]]:
        hub = Hub()
        ingest = Ingest("srv", hub, supervisor, GatewayMetrics(), {})
        await ingest.on_welcome()
        await ingest.on_messages([message(100, 0), message(100, 1)])
        await ingest.on_messages([message(100, 4)])  # 2 and 3 never reached the tap
        await drain(ingest)
        return hub.bodies

    bodies = asyncio.run(scenario())
    assert supervisor.history_reads == 1, "the history is read for the gap, and only for it"
    events = [b for b in bodies if b.get("kind") == "event"]
    assert [(b["seq"], bool(b.get("recovered"))) for b in events] == [
        (0, False), (1, False), (2, True), (3, True), (4, False)]
    assert not [b for b in bodies if b.get("event") == "gap-unrecovered"]


def test_a_new_worker_starting_at_zero_after_a_bye_is_no_gap() -> None:
    from protocol import Bye

    supervisor = Supervisor(1, 111, [])

    async def scenario() -> list[dict[str, Any]]:
        hub = Hub()
        ingest = Ingest("srv", hub, supervisor, GatewayMetrics(), {})
        await ingest.on_welcome()
        await ingest.on_messages([message(100, 0), Bye("srv", "b1", 100, 1, 1001.0, "stopped", 0), message(200, 0)])
        await drain(ingest)
        return hub.bodies

    bodies = asyncio.run(scenario())
    assert supervisor.history_reads == 0, "a stream without a gap never reads the history"
    assert not [b for b in bodies if b.get("recovered") or b.get("event") == "gap-unrecovered"]
    assert [(b["pid"], b["seq"]) for b in bodies if b.get("kind") == "event"] == [(100, 0), (200, 0)]
