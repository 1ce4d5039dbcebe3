"""Tap messages as JSON-ready dicts, and the stable id of each event.

An event's id names it for good: ``evt_`` + the first 24 hex digits of SHA-256 over
``server/bot/pid/seq/ts``. The same event has the same id on every delivery attempt, after a
gateway restart and when it is recovered from the bot's history (which keeps pid, seq and ts);
two events never share one, across worker restarts (a new pid, or a reused pid at another
ts) and supervisor restarts alike. State changes are named the same way with ``state``
standing in for the pid (their seq counts per bot, from the supervisor).
"""

from __future__ import annotations

import hashlib
from typing import Any

from protocol.messages import KIND_OF, Event, Message, StateChange
from protocol.schema import to_mapping

#: kinds carried to webhooks (and named by an id): worker events and state changes
DELIVERED_KINDS = ("event", "state")


def event_id(server: str, bot: str, stream: int | str, seq: int, ts: float) -> str:
    raw = f"{server}/{bot}/{stream}/{seq}/{ts!r}".encode()
    return "evt_" + hashlib.sha256(raw).hexdigest()[:24]


def to_json(message: Message) -> dict[str, Any]:
    """``{kind, server, bot, pid, seq, ts, ...}``; events and state changes gain ``id`` and ``type``."""
    body = to_mapping(message)
    body["kind"] = KIND_OF[type(message)].value
    if isinstance(message, Event):
        body["id"] = event_id(message.server, message.bot, message.pid, message.seq, message.ts)
    elif isinstance(message, StateChange):
        body["id"] = event_id(message.server, message.bot, "state", message.seq, message.ts)
        body["type"] = "state"
    return body


def from_history(server: str, bot: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry (control ``history``) as the event it was on the tap."""
    return {"kind": "event", "server": server, "bot": bot, "pid": entry["pid"], "seq": entry["seq"],
            "ts": entry["timestamp"], "type": entry["type"], "data": entry["data"],
            "id": event_id(server, bot, entry["pid"], entry["seq"], entry["timestamp"]), "recovered": True}


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
    return envelope
