"""Operations the supervisor may ask of a worker, by name (the bot handle's methods)."""

from __future__ import annotations

from typing import Any, Callable

from . import wa_operations
from .arguments import jid_arg, text_arg, to_jid
from .backends.base import Backend
from .errors import CommandError
from .outbox import submit

PRESENCES = ("available", "unavailable", "composing", "paused", "recording")


def ping(backend: Backend, args: dict[str, Any]) -> Any:
    return {"status": str(backend.status), "connection_attempts": backend.connection_attempts}


def send(backend: Backend, args: dict[str, Any]) -> Any:
    text = text_arg(args, "text")
    if len(text.encode()) > 65536:
        raise CommandError("text is over WhatsApp's 65536-byte limit")
    to = jid_arg(args, "to")
    extra = wa_operations.reply_args(backend, args)  # quote, mentions
    return submit(backend, "send", {"to": to, "text": text, **extra})


def send_status(backend: Backend, args: dict[str, Any]) -> Any:
    """What became of an accepted send: its row in the bot's outbox."""
    send_id = text_arg(args, "id")
    if backend.outbox is None:
        raise CommandError("this bot has no outbox")
    return backend.outbox.lookup(send_id)


def presence(backend: Backend, args: dict[str, Any]) -> Any:
    value = text_arg(args, "presence")
    if value not in PRESENCES:
        raise CommandError(f"presence must be one of {', '.join(PRESENCES)}, got {value!r}")
    chat = args.get("chat")
    if isinstance(chat, str) and chat:  # typing in one chat (composing, paused, recording)
        return backend.set_presence(value, to_jid(chat, "chat"))
    return backend.set_presence(value)


def mark_read(backend: Backend, args: dict[str, Any]) -> Any:
    ids = args.get("message_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise CommandError("argument 'message_ids' must be a non-empty list of strings")
    sender = args.get("sender")
    chat = jid_arg(args, "chat")
    given = to_jid(sender, "sender") if isinstance(sender, str) and sender else None
    return backend.mark_read(chat, ids, wa_operations.read_sender(backend, chat, ids, given))


def logout(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.logout()


def backup(backend: Backend, args: dict[str, Any]) -> Any:
    """Back up this bot's session now (SQLite online backup or JSON copy), from inside its worker."""
    from .credentials import CredentialsManager

    made = CredentialsManager.for_bot_dir(backend.ctx.bot_dir).backup_credentials(backend.ctx.bot)
    if made is None:
        raise CommandError("nothing to back up: this bot has no stored session yet")
    return {"stamp": made.stamp, "store": str(made.store) if made.store else None,
            "metadata": str(made.metadata) if made.metadata else None}


#: command name -> handler(backend, args) -> plain-data result
OPERATIONS: dict[str, Callable[[Backend, dict[str, Any]], Any]] = {
    "ping": ping,
    "send": send,
    "send_status": send_status,
    "presence": presence,
    "mark_read": mark_read,
    "logout": logout,
    "backup": backup,
    **wa_operations.OPERATIONS,
}


def run(backend: Backend, name: str, args: dict[str, Any]) -> Any:
    """Run operation ``name`` (a bot app's context calls this in-process); CommandError names a missing one."""
    operation = OPERATIONS.get(name)
    if operation is None:
        raise CommandError(f"the {backend.name} backend has no operation {name!r} (it has: {', '.join(sorted(OPERATIONS))})")
    return operation(backend, args)
