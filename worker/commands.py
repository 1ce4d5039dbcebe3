"""Operations the supervisor may ask of a worker, by name (the bot handle's methods)."""

from __future__ import annotations

from typing import Any, Callable

from .backends.base import Backend
from .errors import CommandError

PRESENCES = ("available", "unavailable", "composing", "paused", "recording")


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise CommandError(f"argument {key!r} must be a non-empty string")
    return value


def ping(backend: Backend, args: dict[str, Any]) -> Any:
    return {"status": str(backend.status), "connection_attempts": backend.connection_attempts}


def send(backend: Backend, args: dict[str, Any]) -> Any:
    text = _text(args, "text")
    if len(text.encode()) > 65536:
        raise CommandError("text is over WhatsApp's 65536-byte limit")
    return backend.send_text(_text(args, "to"), text)


def presence(backend: Backend, args: dict[str, Any]) -> Any:
    value = _text(args, "presence")
    if value not in PRESENCES:
        raise CommandError(f"presence must be one of {', '.join(PRESENCES)}, got {value!r}")
    return backend.set_presence(value)


def mark_read(backend: Backend, args: dict[str, Any]) -> Any:
    ids = args.get("message_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise CommandError("argument 'message_ids' must be a non-empty list of strings")
    sender = args.get("sender")
    return backend.mark_read(_text(args, "chat"), ids, sender if isinstance(sender, str) else None)


def logout(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.logout()


#: command name -> handler(backend, args) -> plain-data result
OPERATIONS: dict[str, Callable[[Backend, dict[str, Any]], Any]] = {
    "ping": ping,
    "send": send,
    "presence": presence,
    "mark_read": mark_read,
    "logout": logout,
}
