"""Human-readable lines for tap output (plain or coloured) and terminal QR codes."""

from __future__ import annotations

import sys
import time
from typing import Any

from protocol import Bye, Event, Heartbeat, Hello, Notice, StateChange
from protocol.schema import to_mapping

COLOURS = {
    "hello": "32", "bye": "33", "heartbeat": "2", "state": "36", "notice": "35",
    "connection-update": "34", "message-upsert": "0", "creds-update": "35", "presence-update": "2", "error": "31",
    "receipt-update": "2", "call-update": "33", "group-update": "36", "history-sync": "2",
}
STATE_COLOURS = {"running": "32", "failed": "31", "backoff": "33", "stopping": "33", "stopped": "2",
                 "initializing": "36"}


def paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code != "0" else text


def describe_message(message: Any, colour: bool = False) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(message.ts)) + f".{int(message.ts * 1000) % 1000:03d}"
    who = f"{message.server}/{message.bot}"
    match message:
        case Hello():
            label, detail = "hello", f"backend={message.backend} heartbeat={message.heartbeat_interval:g}s"
        case Heartbeat():
            label = "heartbeat"
            detail = f"status={message.bot_status} attempts={message.connection_attempts}"
            if message.events_dropped:
                detail += f" dropped={message.events_dropped}"
        case Event():
            label = message.type.value
            detail = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                              for k, v in to_mapping(message.data).items() if k != "qr")
            if getattr(message.data, "qr", None):
                detail += " qr=<scan below>"
        case Bye():
            label, detail = "bye", f"reason={message.reason!r} exit={message.exit_code}"
        case StateChange():
            label = "state"
            detail = f"{message.previous} -> {paint(message.state.value, STATE_COLOURS.get(message.state.value, '0'), colour)}"
            if message.reason:
                detail += f" ({message.reason})"
        case Notice():
            label, detail = "notice", f"[{message.level}] {message.message}"
        case _:
            label, detail = type(message).__name__, ""
    return f"{clock} {who} #{message.seq} pid={message.pid} {paint(label, COLOURS.get(label, '0'), colour)} {detail}"


def render_qr(data: str, out: Any = None) -> None:
    """Draw ``data`` as a scannable QR block in the terminal (segno, as neonize does)."""
    import segno

    segno.make_qr(data).terminal(out=out or sys.stdout, compact=True)
