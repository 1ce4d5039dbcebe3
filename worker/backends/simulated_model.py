"""What the SIMULATED backend injects on request: incoming WhatsApp traffic built from plain
arguments (the ``simulate`` operation, ``botvisor simulate``, ``[bots.simulated] script``),
shaped exactly as the neonize backend maps the real thing (protocol/whatsapp.py).

Also the id source: simulated message ids carry the worker's life number, kept in the bot's
directory, so ids stay unique across worker restarts.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from protocol import (
    CallUpdate,
    EventData,
    GroupUpdate,
    HistorySync,
    LinkPreview,
    Media,
    MessageUpsert,
    PresenceUpdate,
    Quoted,
    ReceiptUpdate,
)
from protocol.whatsapp import MEDIA_KINDS

from ..arguments import group_arg, jid_arg, optional_jids, optional_text, text_arg, to_jid
from ..atomic import write_atomic
from ..commands import PRESENCES
from ..errors import CommandError
from ..recent import RecentMessages

#: the bot directory's record of how many lives this simulated session had
LIVES_FILE = "simulated-lives.json"
#: what ``simulate`` injects (``kind``)
SIMULATE_KINDS = ("message", "reaction", "edit", "revoke", "receipt", "call", "group", "presence", "history-sync")
RECEIPT_TYPES = ("delivered", "read", "played")
CALL_STATES = ("offer", "accept", "terminate", "reject")
GROUP_ACTIONS = ("join", "leave", "promote", "demote", "subject", "description", "announce", "locked", "ephemeral")


class MessageIds:
    """``SIM<life><n>`` incoming, ``SIMOUT<life><n>`` outgoing: the life number is stored in the
    bot's directory and grows by one per worker start, so no two lives hand out the same id."""

    def __init__(self, bot_dir: Path) -> None:
        path = bot_dir / LIVES_FILE
        try:
            life = int(json.loads(path.read_text())["lives"]) + 1
        except (OSError, ValueError, KeyError, TypeError):
            life = 1
        write_atomic(path, json.dumps({"lives": life}).encode())
        self.life = life
        self.count = 0

    def next(self, prefix: str = "SIM") -> str:
        self.count += 1
        return f"{prefix}{self.life:06d}{self.count:08d}"


def media_from_file(kind: str, path: str, *, mimetype: str | None = None, file_name: str | None = None,
                    max_bytes: int | None = None, key: str = "path") -> tuple[Media, bytes]:
    """A Media description of a local file (and its bytes), or a CommandError naming ``key``."""
    if kind not in MEDIA_KINDS:
        raise CommandError(f"argument 'kind' must be one of {', '.join(MEDIA_KINDS)}, got {kind!r}")
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"argument {key!r}: no such file {path!r}")
    size = file.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise CommandError(f"argument {key!r}: {path!r} is {size} bytes, over the {max_bytes}-byte media limit")
    data = file.read_bytes()
    guessed = mimetypes.guess_type(file.name)[0]
    return Media(kind=kind, mimetype=mimetype or guessed or "application/octet-stream",  # type: ignore[arg-type]
                 size=size, file_name=file_name or (file.name if kind == "document" else None),
                 sha256=hashlib.sha256(data).hexdigest()), data


class Injector:
    """Builds the events ``simulate`` injects; remembers media so ``download`` can fetch it."""

    def __init__(self, ids: MessageIds, recent: RecentMessages, me: str) -> None:
        self.ids, self.recent, self.me = ids, recent, me
        #: message id -> the "uploaded" bytes of its media (the simulated CDN), and direct path -> id
        self.media: dict[str, bytes] = {}
        self.by_path: dict[str, str] = {}

    def upload(self, message_id: str, media: Media, data: bytes) -> Media:
        """Put ``data`` on the simulated CDN; the Media gains the fields a download needs."""
        from .simulated_ops import fake_media_fields

        media = fake_media_fields(message_id, media)
        self.media[message_id] = data
        self.by_path[str(media.direct_path)] = message_id
        return media

    def build(self, args: dict[str, Any], now: float | None = None) -> EventData:
        kind = args.get("kind", "message")
        if kind not in SIMULATE_KINDS:
            raise CommandError(f"argument 'kind' must be one of {', '.join(SIMULATE_KINDS)}, got {kind!r}")
        ts = time.time() if now is None else now
        if kind == "group":
            return self._group(args, ts)
        if kind == "history-sync":
            return HistorySync(sync_type=text_arg(args, "sync_type", "RECENT"),
                               conversations=int(args.get("conversations", 1)),
                               messages=int(args.get("messages", 1)), progress=args.get("progress"))
        sender = jid_arg(args, "from")
        group = args.get("group")
        chat = group_arg(args) if group else sender
        if kind == "receipt":
            return self._receipt(args, chat, sender, ts)
        if kind == "call":
            state = args.get("state", "offer")
            if state not in CALL_STATES:
                raise CommandError(f"argument 'state' must be one of {', '.join(CALL_STATES)}, got {state!r}")
            call_id = optional_text(args, "call_id", empty=True) or self.ids.next("SIMCALL")
            return CallUpdate(call_id=call_id, caller=sender, state=state, timestamp=ts,
                              is_video=bool(args.get("video", False)), is_group=bool(group),
                              reason=optional_text(args, "reason", empty=True))
        if kind == "presence":
            presence = args.get("presence", "available")
            if presence not in PRESENCES:
                raise CommandError(f"argument 'presence' must be one of {', '.join(PRESENCES)}, got {presence!r}")
            return PresenceUpdate(jid=sender, presence=presence, chat=chat if group else None,
                                  last_seen=None if presence == "available" else ts)
        base = MessageUpsert(id=self.ids.next(), chat=chat, sender=sender, timestamp=ts, from_me=False,
                             push_name=optional_text(args, "push_name", empty=True) or "Simulated",
                             is_group=bool(group), sender_alt=optional_text(args, "sender_alt", empty=True))
        if kind == "message":
            return self._message(base, args)
        target = self.recent.require(text_arg(args, "target"), "target").message
        if kind == "reaction":
            emoji = args.get("emoji", "")
            if not isinstance(emoji, str):
                raise CommandError("argument 'emoji' must be a string ('' takes a reaction back)")
            return replace(base, kind="reaction", message_type="reaction", target_id=target.id, emoji=emoji)
        if kind == "edit":
            return replace(base, kind="edit", message_type="text", target_id=target.id, text=text_arg(args, "text"))
        return replace(base, kind="revoke", message_type="revoke", target_id=target.id)

    def _message(self, base: MessageUpsert, args: dict[str, Any]) -> MessageUpsert:
        text = optional_text(args, "text", empty=True)
        quoted = None
        if args.get("quote"):
            seen = self.recent.get(text_arg(args, "quote"))
            quoted = (Quoted(id=seen.message.id, sender=seen.message.sender, text=seen.message.text,
                             message_type=seen.message.message_type)
                      if seen else Quoted(id=text_arg(args, "quote")))
        media = None
        spec = args.get("media")
        if spec is not None:
            if not isinstance(spec, dict):
                raise CommandError("argument 'media' must be a map with 'kind' and 'path'")
            media, data = media_from_file(text_arg(spec, "kind"), text_arg(spec, "path"),
                                          mimetype=optional_text(spec, "mimetype", empty=True),
                                          file_name=optional_text(spec, "file_name", empty=True), key="media.path")
            media = self.upload(base.id, media, data)
        link = optional_text(args, "link", empty=True)
        if text is None and media is None:
            raise CommandError("argument 'text' must be a non-empty string (or give 'media')")
        return replace(base, text=text, message_type=media.kind if media else "text", quoted=quoted, media=media,
                       mentions=optional_jids(args, "mentions"), link_preview=LinkPreview(url=link) if link else None)

    def _receipt(self, args: dict[str, Any], chat: str, sender: str, ts: float) -> ReceiptUpdate:
        rtype = args.get("type", "delivered")
        if rtype not in RECEIPT_TYPES:
            raise CommandError(f"argument 'type' must be one of {', '.join(RECEIPT_TYPES)}, got {rtype!r}")
        ids = args.get("message_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise CommandError("argument 'message_ids' must be a non-empty list of message ids")
        return ReceiptUpdate(chat=chat, sender=sender, message_ids=list(ids), type=rtype, timestamp=ts,
                             is_group=chat.endswith("@g.us"))

    def _group(self, args: dict[str, Any], ts: float) -> GroupUpdate:
        action = args.get("action", "join")
        if action not in GROUP_ACTIONS:
            raise CommandError(f"argument 'action' must be one of {', '.join(GROUP_ACTIONS)}, got {action!r}")
        participants = optional_jids(args, "participants")
        if action in ("join", "leave", "promote", "demote") and not participants:
            raise CommandError(f"argument 'participants' must list who is concerned by {action!r}")
        actor = args.get("from")
        value = args.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise CommandError("argument 'value' must be an integer")
        return GroupUpdate(group=group_arg(args), action=action, timestamp=ts,
                           actor=to_jid(actor, "from") if isinstance(actor, str) and actor else None,
                           participants=participants, subject=optional_text(args, "subject", empty=True),
                           description=optional_text(args, "description", empty=True), value=value)
