"""The WhatsApp operations beyond plain text (issue 13) and offline injection, by name.

Each checks its arguments here (with worker/arguments.py), once for both backends, and names
the bad one in its error; the WhatsApp work is the backend's method of the same name
(worker/backends/neonize_ops.py, worker/backends/simulated_ops.py). Operations that send a
message (``send`` with a quote or mentions, ``send_media``, ``react``, ``edit``, ``revoke``) go
through the durable outbox (worker/outbox.py: stored, rate limited, sent in order, one WhatsApp
id each).
``commands.OPERATIONS`` includes this table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from protocol.whatsapp import MEDIA_KINDS

from .arguments import group_arg, jid_arg, optional_jid, optional_jids, optional_text, text_arg, to_jid
from .backends.base import Backend
from .errors import CommandError
from .outbox import submit

#: most numbers / JIDs one check_numbers / user_info call takes (whatsmeow sends one usync query)
MAX_LOOKUPS = 50


# -- argument checks ------------------------------------------------------------------------------
def list_arg(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise CommandError(f"argument {key!r} must be a non-empty list of strings")
    if len(value) > MAX_LOOKUPS:
        raise CommandError(f"argument {key!r} has {len(value)} entries; at most {MAX_LOOKUPS} per call")
    return list(value)


def known_message(backend: Backend, args: dict[str, Any], key: str = "message_id") -> str:
    """A message id this worker has seen (received or sent): react, edit, revoke act on it."""
    message_id = text_arg(args, key)
    backend.recent.require(message_id, key)
    return message_id


def media_limit(backend: Backend) -> int:
    return backend.ctx.bot.whatsapp.media_max_mb * 1024 * 1024


def reply_args(backend: Backend, args: dict[str, Any]) -> dict[str, Any]:
    """``quote`` and ``mentions`` of a send, checked (empty when neither is given)."""
    extra: dict[str, Any] = {}
    if args.get("quote") is not None:
        extra["quote"] = known_message(backend, args, "quote")
    mentions = optional_jids(args, "mentions")
    if mentions is not None:
        extra["mentions"] = mentions
    return extra


def read_sender(backend: Backend, chat: str, message_ids: list[str], sender: str | None) -> str | None:
    """The author a group read receipt names: whatsmeow's MarkRead sends ``sender`` as the
    receipt's participant, and the group's own JID there is a wrong receipt. Looked up from the
    messages this worker saw when not given; None in a private chat (the chat is the sender)."""
    if sender is not None or not chat.endswith("@g.us"):
        return sender
    seen = [backend.recent.get(i) for i in message_ids]
    authors = {s.message.sender for s in seen if s is not None}
    if len(authors) == 1 and all(s is not None for s in seen):
        return authors.pop()
    why = "they have different authors" if len(authors) > 1 else "this worker has not seen them all"
    raise CommandError(f"argument 'sender' is needed to mark messages read in a group: their author ({why})")


# -- the operations -------------------------------------------------------------------------------
def send_media(backend: Backend, args: dict[str, Any]) -> Any:
    to = jid_arg(args, "to")
    kind = text_arg(args, "kind")
    if kind not in MEDIA_KINDS:
        raise CommandError(f"argument 'kind' must be one of {', '.join(MEDIA_KINDS)}, got {kind!r}")
    path = Path(text_arg(args, "path"))
    if not path.is_absolute():
        raise CommandError(f"argument 'path' must be an absolute path (the worker runs in the bot's directory), "
                           f"got {str(path)!r}")
    if not path.is_file():
        raise CommandError(f"argument 'path': no such file {str(path)!r}")
    size, limit = path.stat().st_size, media_limit(backend)
    if size > limit:
        raise CommandError(f"argument 'path': {str(path)!r} is {size} bytes, over the media limit of {limit} bytes "
                           "(media_max_mb)")
    if size == 0:
        raise CommandError(f"argument 'path': {str(path)!r} is empty")
    caption = optional_text(args, "caption")
    if caption is not None and kind in ("audio", "voice", "sticker"):
        raise CommandError(f"argument 'caption': WhatsApp shows no caption on {kind} messages")
    call = {"to": to, "kind": kind, "path": str(path)}
    for key in ("caption", "file_name", "mimetype"):
        value = optional_text(args, key)
        if value is not None:
            call[key] = value
    if args.get("quote") is not None:
        call["quote"] = known_message(backend, args, "quote")
    return submit(backend, "send_media", call)


def react(backend: Backend, args: dict[str, Any]) -> Any:
    emoji = args.get("emoji")
    if not isinstance(emoji, str) or len(emoji) > 16:
        raise CommandError("argument 'emoji' must be an emoji ('' takes the reaction back)")
    call = {"chat": jid_arg(args, "chat"), "target": known_message(backend, args), "emoji": emoji}
    sender = optional_jid(args, "sender")
    if sender is not None:
        call["sender"] = sender
    return submit(backend, "react", call)


def edit(backend: Backend, args: dict[str, Any]) -> Any:
    target = known_message(backend, args)
    if not backend.recent.require(target).message.from_me:
        raise CommandError(f"argument 'message_id': {target!r} was not sent by this bot; only its own messages "
                           "can be edited")
    text = text_arg(args, "text")
    return submit(backend, "edit", {"chat": jid_arg(args, "chat"), "target": target, "text": text})


def revoke(backend: Backend, args: dict[str, Any]) -> Any:
    call = {"chat": jid_arg(args, "chat"), "target": known_message(backend, args)}
    sender = optional_jid(args, "sender")
    if sender is not None:
        call["sender"] = sender
    return submit(backend, "revoke", call)


def download(backend: Backend, args: dict[str, Any]) -> Any:
    """The media of a received message into ``<bot dir>/media/``: by ``message_id`` (this worker
    saw it) or by the ``media`` map of a message-upsert (any message, also from before a restart)."""
    media = args.get("media")
    if media is not None:
        if not isinstance(media, dict) or not media.get("direct_path") or not media.get("media_key"):
            raise CommandError("argument 'media' must be a message-upsert's media map (with direct_path and "
                               "media_key)")
        return backend.download(target=None, media=dict(media), limit=media_limit(backend))
    target = known_message(backend, args)
    if backend.recent.require(target).message.media is None:
        raise CommandError(f"argument 'message_id': message {target!r} has no media")
    return backend.download(target=target, media=None, limit=media_limit(backend))


def subscribe_presence(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.subscribe_presence(jid_arg(args, "jid"))


def check_numbers(backend: Backend, args: dict[str, Any]) -> Any:
    numbers = list_arg(args, "numbers")
    return backend.check_numbers([to_jid(n, "numbers").split("@")[0] for n in numbers])


def user_info(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.user_info([to_jid(j, "jids") for j in list_arg(args, "jids")])


def group_info(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.group_info(group_arg(args))


def reject_call(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.reject_call(text_arg(args, "call_id"), jid_arg(args, "caller"))


def simulate(backend: Backend, args: dict[str, Any]) -> Any:
    return backend.simulate(dict(args))


OPERATIONS: dict[str, Callable[[Backend, dict[str, Any]], Any]] = {
    "send_media": send_media,
    "react": react,
    "edit": edit,
    "revoke": revoke,
    "download": download,
    "subscribe_presence": subscribe_presence,
    "check_numbers": check_numbers,
    "user_info": user_info,
    "group_info": group_info,
    "reject_call": reject_call,
    "simulate": simulate,
}
