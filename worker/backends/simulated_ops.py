"""The SIMULATED backend's WhatsApp operations: what the neonize backend does against the
network (worker/backends/neonize_ops.py), modelled offline with the same results and the same
events. Sent media, reactions, edits and revokes are echoed as ``from_me`` message-upserts and
recorded in ``SimulatedBackend.sent``; media "uploaded" or received is kept in memory (the
simulated CDN) so ``download`` returns the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol import CallUpdate, EventData, GroupUpdate, Media, MessageUpsert, PresenceUpdate, Quoted

from ..atomic import write_atomic
from ..errors import CommandError
from .simulated_model import media_from_file

if TYPE_CHECKING:
    from .simulated import SimulatedBackend

#: where ``download`` writes, inside the bot's directory (both backends)
MEDIA_DIR = "media"


def download_path(bot_dir: Path, message_id: str, mimetype: str | None) -> Path:
    """``<bot dir>/media/<message id><ext>``; the id is WhatsApp's, so only its safe characters."""
    safe = "".join(c for c in message_id if c.isalnum() or c in "-_")[:64] or "media"
    ext = mimetypes.guess_extension((mimetype or "").split(";")[0].strip()) or ".bin"
    return bot_dir / MEDIA_DIR / f"{safe}{ext}"


def save_download(bot_dir: Path, message_id: str, data: bytes, mimetype: str | None, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise CommandError(f"the media is {len(data)} bytes, over the media limit of {limit} bytes (media_max_mb)")
    path = download_path(bot_dir, message_id, mimetype)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_atomic(path, data)
    return {"path": str(path), "size": len(data), "mimetype": mimetype, "sha256": hashlib.sha256(data).hexdigest()}


class SimulatedGroups:
    """The groups the simulated session is in, from the traffic it saw (group changes, messages)."""

    def __init__(self) -> None:
        #: group JID -> {"subject": str | None, "description": ..., "members": {jid: role}}
        self.groups: dict[str, dict[str, Any]] = {}

    def _group(self, jid: str) -> dict[str, Any]:
        return self.groups.setdefault(jid, {"subject": None, "description": None, "members": {}, "announce": False,
                                            "locked": False, "ephemeral": 0})

    def saw(self, data: EventData) -> None:
        if isinstance(data, MessageUpsert) and data.is_group:
            self._group(data.chat)["members"].setdefault(data.sender, "member")
        elif isinstance(data, GroupUpdate):
            group = self._group(data.group)
            members = group["members"]
            for jid in data.participants or ():
                if data.action == "join":
                    members.setdefault(jid, "member")
                elif data.action == "leave":
                    members.pop(jid, None)
                elif data.action in ("promote", "demote"):
                    members[jid] = "admin" if data.action == "promote" else "member"
            if data.action == "subject":
                group["subject"] = data.subject
            elif data.action == "description":
                group["description"] = data.description
            elif data.action in ("announce", "locked", "ephemeral"):
                group[data.action] = data.value if data.action == "ephemeral" else bool(data.value)


class SimulatedOperations:
    """Mixed into SimulatedBackend."""

    def _echo(self: SimulatedBackend, message: MessageUpsert, op: str, **fields: Any) -> Any:
        delay = self.knobs.send_delay
        if delay:  # a slow network, as neonize's: the wait on the I/O thread, the send on the loop after it
            return self.offload(time.sleep, delay).then(lambda _: self._echo_now(message, op, **fields))
        return self._echo_now(message, op, **fields)

    def _echo_now(self: SimulatedBackend, message: MessageUpsert, op: str, **fields: Any) -> dict[str, Any]:
        self._record_sent(message, op, **fields)
        return {"id": message.id, "timestamp": message.timestamp, "to": message.chat}

    def _outgoing(self: SimulatedBackend, chat: str, message_id: str | None, **fields: Any) -> MessageUpsert:
        return MessageUpsert(id=message_id or self.ids.next("SIMOUT"), chat=chat, sender=self.me,
                             timestamp=time.time(), from_me=True, is_group=chat.endswith("@g.us"), **fields)

    def _quoted(self: SimulatedBackend, quote: str | None) -> Quoted | None:
        seen = self.recent.get(quote) if quote else None
        if seen is None:
            return None  # unknown by now (a retry after a restart): sent without the quote, as neonize does
        return Quoted(id=seen.message.id, sender=seen.message.sender, text=seen.message.text,
                      message_type=seen.message.message_type)

    def send_text(self: SimulatedBackend, to: str, text: str, quote: str | None = None,
                  mentions: list[str] | None = None, *, message_id: str | None = None) -> dict[str, Any]:
        self._require_online()
        message = self._outgoing(to, message_id, text=text, quoted=self._quoted(quote), mentions=mentions or None)
        fields: dict[str, Any] = {"text": text}
        if quote:
            fields["quote"] = quote
        if mentions:
            fields["mentions"] = list(mentions)
        return self._echo(message, "send", **fields)

    def send_media(self: SimulatedBackend, to: str, kind: str, path: str, caption: str | None = None,
                   file_name: str | None = None, mimetype: str | None = None, quote: str | None = None, *,
                   message_id: str | None = None) -> dict[str, Any]:
        self._require_online()
        media, data = media_from_file(kind, path, mimetype=mimetype, file_name=file_name)
        message = self._outgoing(to, message_id, text=caption, message_type=kind, quoted=self._quoted(quote))
        media = self.injector.upload(message.id, media, data)
        message = replace(message, media=media)
        fields = {k: v for k, v in (("kind", kind), ("path", path), ("caption", caption), ("file_name", file_name),
                                    ("mimetype", media.mimetype), ("quote", quote)) if v is not None}
        return self._echo(message, "send_media", **fields)

    def react(self: SimulatedBackend, chat: str, target: str, emoji: str, sender: str | None = None, *,
              message_id: str | None = None) -> dict[str, Any]:
        self._require_online()
        message = self._outgoing(chat, message_id, kind="reaction", message_type="reaction", target_id=target,
                                 emoji=emoji)
        return self._echo(message, "react", target=target, emoji=emoji)

    def edit(self: SimulatedBackend, chat: str, target: str, text: str, *,
             message_id: str | None = None) -> dict[str, Any]:
        self._require_online()
        message = self._outgoing(chat, message_id, kind="edit", message_type="text", target_id=target, text=text)
        return self._echo(message, "edit", target=target, text=text)

    def revoke(self: SimulatedBackend, chat: str, target: str, sender: str | None = None, *,
               message_id: str | None = None) -> dict[str, Any]:
        self._require_online()
        message = self._outgoing(chat, message_id, kind="revoke", message_type="revoke", target_id=target)
        return self._echo(message, "revoke", target=target)

    def download(self: SimulatedBackend, target: str | None, media: dict[str, Any] | None,
                 limit: int) -> dict[str, Any]:
        self._require_online()
        if target is None:
            assert media is not None
            target = self.injector.by_path.get(str(media.get("direct_path")))
            if target is None:
                raise CommandError("argument 'media': WhatsApp has no such media (the simulated CDN never held "
                                   f"{media.get('direct_path')!r})")
        data = self.injector.media.get(target)
        if data is None:
            raise CommandError(f"argument 'message_id': the media of {target!r} is gone from the (simulated) CDN")
        seen = self.recent.get(target)
        mimetype = seen.message.media.mimetype if seen and seen.message.media else (media or {}).get("mimetype")
        return save_download(self.ctx.bot_dir, target, data, mimetype, limit)

    def subscribe_presence(self: SimulatedBackend, jid: str) -> dict[str, Any]:
        self._require_online()
        self.subscribed.add(jid)
        # WhatsApp answers a subscription with the contact's current presence
        self.ctx.emit(PresenceUpdate(jid=jid, presence="available"))
        return {"jid": jid, "subscribed": True}

    def _registered(self: SimulatedBackend, user: str) -> bool:
        return user not in {n.lstrip("+") for n in self.knobs.unregistered}

    def check_numbers(self: SimulatedBackend, numbers: list[str]) -> dict[str, Any]:
        self._require_online()
        return {"results": [{"query": n, "jid": f"{n}@s.whatsapp.net" if self._registered(n) else None,
                             "on_whatsapp": self._registered(n)} for n in numbers]}

    def user_info(self: SimulatedBackend, jids: list[str]) -> dict[str, Any]:
        self._require_online()
        users = []
        for jid in jids:
            if self._registered(jid.split("@")[0]):
                users.append({"jid": jid, "status": "Hey there! I am using WhatsApp.", "picture_id": None,
                              "verified_name": None, "devices": [jid]})
        return {"users": users}

    def group_info(self: SimulatedBackend, group: str) -> dict[str, Any]:
        self._require_online()
        known = self.groups.groups.get(group)
        if known is None:
            raise CommandError(f"argument 'group': this bot is not in group {group!r} (the simulated session knows "
                               "the groups it saw traffic from)")
        members = {self.me: "member", **known["members"]}
        return {"group": group, "subject": known["subject"], "description": known["description"], "owner": None,
                "created": None, "announce": known["announce"], "locked": known["locked"],
                "ephemeral": known["ephemeral"],
                "participants": [{"jid": jid, "is_admin": role in ("admin", "superadmin"),
                                  "is_super_admin": role == "superadmin", "display_name": None}
                                 for jid, role in sorted(members.items())]}

    def reject_call(self: SimulatedBackend, call_id: str, caller: str) -> dict[str, Any]:
        self._require_online()
        offered = self.calls.pop(call_id, None)
        if offered is None:
            raise CommandError(f"argument 'call_id': no incoming call {call_id!r} is ringing")
        if offered != caller:
            self.calls[call_id] = offered
            raise CommandError(f"argument 'caller': call {call_id!r} is from {offered}, not {caller}")
        return {"call_id": call_id, "caller": caller, "rejected": True}

    def _track(self: SimulatedBackend, data: EventData) -> None:
        """What incoming traffic changes in the model: groups, ringing calls."""
        self.groups.saw(data)
        if isinstance(data, CallUpdate):
            if data.state == "offer":
                self.calls[data.call_id] = data.caller
            else:
                self.calls.pop(data.call_id, None)


def fake_media_fields(message_id: str, media: Media) -> Media:
    """The CDN fields a real upload returns, made up (they only have to round-trip)."""
    key = base64.b64encode(hashlib.sha256(message_id.encode()).digest()).decode()
    return replace(media, direct_path=f"/simulated/{message_id}", media_key=key, enc_sha256=key)
