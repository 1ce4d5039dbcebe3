"""Tap messages as JSON-ready dicts, and the stable id of each event.

An event's id names it for good: ``evt_`` + the first 24 hex digits of SHA-256 over
``server/bot/pid/seq/ts``. The same event has the same id on every delivery attempt, after a
gateway restart and when it is recovered from the bot's history (which keeps pid, seq and ts);
two events never share one, across worker restarts (a new pid, or a reused pid at another
ts) and supervisor restarts alike. State changes are named the same way with ``state``
standing in for the pid (their seq counts per bot, from the supervisor).

In a ``[cluster]`` the shard that recorded the event (whose tap carried it, or whose history
it was recovered from) is part of the id: ``server/<shard>:bot/...``. Shards in pods have
PID namespaces of their own, so two shards' workers often share a pid, and seq restarts at 0
in each; with the shard in it, no two shards' events can share an id, which the outbox's
deduplication (one delivery per endpoint and id) relies on. One host's ids are unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

from protocol.messages import KIND_OF, Event, Message, StateChange
from protocol.schema import to_mapping

#: kinds carried to webhooks (and named by an id): worker events and state changes
DELIVERED_KINDS = ("event", "state")


def event_id(server: str, bot: str, stream: int | str, seq: int, ts: float, shard: int | None = None) -> str:
    name = bot if shard is None else f"{shard}:{bot}"
    raw = f"{server}/{name}/{stream}/{seq}/{ts!r}".encode()
    return "evt_" + hashlib.sha256(raw).hexdigest()[:24]


def to_json(message: Message, shard: int | None = None) -> dict[str, Any]:
    """``{kind, server, bot, pid, seq, ts, ...}``; events and state changes gain ``id`` and ``type``;
    in a [cluster], every message gains the ``shard`` whose tap carried it."""
    body = to_mapping(message)
    body["kind"] = KIND_OF[type(message)].value
    if isinstance(message, Event):
        body["id"] = event_id(message.server, message.bot, message.pid, message.seq, message.ts, shard)
    elif isinstance(message, StateChange):
        body["id"] = event_id(message.server, message.bot, "state", message.seq, message.ts, shard)
        body["type"] = "state"
    if shard is not None:
        body["shard"] = shard
    return body


def from_history(server: str, bot: str, entry: dict[str, Any], shard: int | None = None) -> dict[str, Any]:
    """A history entry (control ``history`` of ``shard``) as the event it was on the tap."""
    body = {"kind": "event", "server": server, "bot": bot, "pid": entry["pid"], "seq": entry["seq"],
            "ts": entry["timestamp"], "type": entry["type"], "data": entry["data"],
            "id": event_id(server, bot, entry["pid"], entry["seq"], entry["timestamp"], shard), "recovered": True}
    if shard is not None:
        body["shard"] = shard
    return body


def message_type(body: dict[str, Any]) -> str:
    """What a filter on ``type`` matches: the event type, ``state``, or the kind."""
    return body.get("type") or body["kind"]


def webhook_envelope(body: dict[str, Any]) -> dict[str, Any]:
    """What a webhook receives for a delivered message."""
    if body["kind"] == "state":
        data = {k: body.get(k) for k in ("state", "previous", "reason", "next_restart_at", "last_exit", "restarts")}
    else:
        data = body.get("data", {})
    envelope = {"id": body["id"], "server": body["server"], "bot": body["bot"], "type": message_type(body),
                "timestamp": body["ts"], "seq": body["seq"], "pid": body.get("pid"), "data": data}
    if body.get("recovered"):
        envelope["recovered"] = True
    if body.get("shard") is not None:
        envelope["shard"] = body["shard"]
    return envelope
