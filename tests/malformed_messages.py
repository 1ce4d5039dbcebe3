"""Every protocol message kind with every field made wrong in every way that must be refused."""

from __future__ import annotations

import math
from typing import Iterator

import msgpack

from protocol import (
    BotStatus,
    Bye,
    ConnectionUpdate,
    ContainerState,
    CredsUpdate,
    ErrorEvent,
    Event,
    EventType,
    Heartbeat,
    Hello,
    MessageUpsert,
    Notice,
    PresenceUpdate,
    ProtocolError,
    StateChange,
    decode,
    encode,
)

WRONG = [None, "x", -1, 1.5, math.nan, math.inf, [], {"k": 1}, b"\x00", True, 2**64 - 1, -(2**63), "../x"]


def samples(server: str, bot: str, pid: int) -> list:
    h = dict(server=server, bot=bot, pid=pid, seq=0, ts=1.0)
    data = [ConnectionUpdate("open", attempt=0, retry_in=1.0), MessageUpsert("i", "c", "s", 1.0, False, text="t"),
            CredsUpdate(True, phone_number="1", last_updated=1.0), PresenceUpdate("j", "available", last_seen=1.0),
            ErrorEvent("code", "message", status=1, expires_at=1.0)]
    types = [EventType.CONNECTION_UPDATE, EventType.MESSAGE_UPSERT, EventType.CREDS_UPDATE,
             EventType.PRESENCE_UPDATE, EventType.ERROR]
    return [Hello(**h, backend="simulated", heartbeat_interval=1.0, version="1"),
            Heartbeat(**h, bot_status=BotStatus.ONLINE), Bye(**h, reason="r", exit_code=0),
            StateChange(**h, state=ContainerState.RUNNING, previous=ContainerState.INITIALIZING, restarts=0),
            Notice(**{**h, "bot": "_supervisor"}, level="info", message="m"),
            *[Event(**h, type=t, data=d) for t, d in zip(types, data)]]


def mutations(message) -> Iterator[tuple[str, bytes, bytes, str]]:
    """(field path, topic, payload, error) for every refused one-field change of ``message``."""
    topic, payload = encode(message)
    body = msgpack.unpackb(payload)
    paths = [(k,) for k in body if k not in ("v", "kind", "data")]
    paths += [("data", k) for k in body.get("data", {})]
    for path in paths:
        for value in WRONG:
            changed = msgpack.unpackb(payload)
            target = changed if len(path) == 1 else changed["data"]
            target[path[-1]] = value
            raw = msgpack.packb(changed, use_bin_type=True)
            try:
                decode(raw)
            except ProtocolError as exc:
                yield ".".join(path), topic, raw, str(exc)
