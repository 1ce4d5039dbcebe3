"""The neonize backend's WhatsApp operations (mixed into NeonizeBackend).

Every network call runs on the worker's I/O thread (``self.offload``, worker/offload.py) and the
method returns a Pending; what follows it (the echo, the result's plain data) runs on the loop
when the call is done. Every call is neonize's own client method (client.py of neonize 0.5.2), which calls whatsmeow
through the FFI; arguments were checked by worker/wa_operations.py. Messages are built here
rather than with neonize's ``build_*_message`` helpers, which need ffmpeg (audio, video) and
Pillow thumbnails: a bot sends the file as it is, with the fields whatsmeow's upload returns.
A message the bot sends is echoed as a ``from_me`` message-upsert, as text sends are.

neonize 0.5.2 cannot send under a chosen message id (its SendMessage FFI passes no
SendRequestExtra.ID): ``keeps_message_id`` is False, the outbox never chooses one, and a
``message_id=`` given anyway is refused rather than silently not kept.
"""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neonize.builder import build_edit, build_revoke
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    ImageMessage,
    Message,
    StickerMessage,
    VideoMessage,
)
from neonize.utils.enum import MediaType

from protocol import MessageUpsert

from ..errors import CommandError
from ..offload import Pending
from . import neonize_messages
from .simulated_ops import save_download

if TYPE_CHECKING:
    from .neonize import NeonizeBackend

#: our media kind -> whatsmeow's upload media type, and the Message field it goes in
UPLOAD_TYPES = {"image": MediaType.MediaImage, "video": MediaType.MediaVideo, "audio": MediaType.MediaAudio,
                "voice": MediaType.MediaAudio, "document": MediaType.MediaDocument, "sticker": MediaType.MediaImage}
DEFAULT_MIMETYPES = {"voice": "audio/ogg; codecs=opus", "sticker": "image/webp"}


def no_chosen_id(message_id: str | None) -> None:
    if message_id is not None:
        raise CommandError("the neonize backend cannot send under a chosen message id (neonize 0.5.2 "
                           "does not pass SendRequestExtra.ID to whatsmeow)")


def _jid(value: str) -> Any:
    from .neonize import parse_jid

    return parse_jid(value)


class NeonizeOperations:
    def _call(self: NeonizeBackend, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CommandError:
            raise
        except Exception as exc:  # neonize raises its own errors with whatsmeow's message
            raise CommandError(f"{what} failed: {exc}") from exc

    def _quote_context(self: NeonizeBackend, quote: str | None) -> ContextInfo | None:
        seen = self.recent.get(quote) if quote else None
        if seen is None or seen.raw is None:
            if quote:
                self.ctx.log.warning("message %s is no longer known: sent without quoting it", quote)
            return None
        return self._online_client()._make_quoted_message(seen.raw)

    def _echo(self: NeonizeBackend, response: Any, chat: str, **fields: Any) -> dict[str, Any]:
        ts = time.time()
        me = self._phone_number()
        message = MessageUpsert(id=response.ID, chat=chat, sender=f"{me}@s.whatsapp.net" if me else "", timestamp=ts,
                                from_me=True, is_group=chat.endswith("@g.us"), **fields)
        self.recent.add(message, self._as_event(response, chat))  # kept so a later reply can quote it
        self.ctx.emit(message)
        return {"id": response.ID, "timestamp": ts, "to": chat}

    def _as_event(self: NeonizeBackend, response: Any, chat: str) -> Any:
        """Our own sent message as a neonize Message event, so it can be quoted later."""
        from neonize.proto import Neonize_pb2 as pb

        me = self.client.me.JID if self.client is not None and self.client.me is not None else pb.JID()
        source = pb.MessageSource(Chat=_jid(chat), Sender=me, IsFromMe=True, IsGroup=chat.endswith("@g.us"))
        return pb.Message(Info=pb.MessageInfo(MessageSource=source, ID=response.ID), Message=response.Message)

    # -- sending ----------------------------------------------------------------------------------
    def text_message(self: NeonizeBackend, text: str, quote: str | None, mentions: list[str] | None) -> Message | str:
        context = self._quote_context(quote)
        if context is None and not mentions:
            return text  # neonize makes it a plain conversation message
        context = context or ContextInfo()
        if mentions:
            context.mentionedJID.extend(mentions)
        return Message(extendedTextMessage=ExtendedTextMessage(text=text, contextInfo=context))

    def send_media(self: NeonizeBackend, to: str, kind: str, path: str, caption: str | None = None,
                   file_name: str | None = None, mimetype: str | None = None, quote: str | None = None, *,
                   message_id: str | None = None) -> Pending:
        no_chosen_id(message_id)
        client = self._online_client()
        context = self._quote_context(quote)  # the loop's memory of messages: read here, not on the I/O thread
        mimetype = mimetype or DEFAULT_MIMETYPES.get(kind) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        sending = self.offload(_upload_and_send, self, client, to, kind, path, caption, file_name, mimetype, context)
        return sending.then(lambda sent: self._echo(sent[1], to, text=caption, message_type=kind,
                                                    media=neonize_messages.media_of(sent[0]),
                                                    quoted=neonize_messages._quoted(context)))

    def react(self: NeonizeBackend, chat: str, target: str, emoji: str, sender: str | None = None, *,
              message_id: str | None = None) -> Pending:
        no_chosen_id(message_id)
        client = self._online_client()
        author = sender or self._author(target, chat)

        def build_and_send() -> Any:  # on the I/O thread: BuildReaction is a Go call too
            reaction = self._call("react", client.build_reaction, _jid(chat), _jid(author), target, emoji)
            return self._call("react", client.send_message, _jid(chat), reaction)

        return self.offload(build_and_send).then(lambda response: self._echo(
            response, chat, kind="reaction", message_type="reaction", target_id=target, emoji=emoji))

    def edit(self: NeonizeBackend, chat: str, target: str, text: str, *,
             message_id: str | None = None) -> Pending:
        no_chosen_id(message_id)
        client = self._online_client()
        message = build_edit(_jid(chat), target, Message(conversation=text))
        return self.offload(self._call, "edit", client.send_message, _jid(chat), message).then(
            lambda response: self._echo(response, chat, kind="edit", message_type="text", target_id=target, text=text))

    def revoke(self: NeonizeBackend, chat: str, target: str, sender: str | None = None, *,
               message_id: str | None = None) -> Pending:
        no_chosen_id(message_id)
        client = self._online_client()
        me = client.me.JID if client.me is not None else None  # never get_me(): it can panic in Go
        if me is None:
            raise CommandError("revoke failed: the session does not know its own JID yet")
        author = sender or self._author(target, chat)
        message = build_revoke(_jid(chat), _jid(author), target, me)
        return self.offload(self._call, "revoke", client.send_message, _jid(chat), message).then(
            lambda response: self._echo(response, chat, kind="revoke", message_type="revoke", target_id=target))

    def _author(self: NeonizeBackend, target: str, chat: str) -> str:
        """Who wrote ``target`` (react and revoke name it in the message key)."""
        seen = self.recent.require(target)
        if seen.message.from_me:
            me = self._phone_number()
            return f"{me}@s.whatsapp.net" if me else chat
        return seen.message.sender

    # -- reading: each call on the I/O thread, its result handed back as plain data ---------------
    def download(self: NeonizeBackend, target: str | None, media: dict[str, Any] | None,
                 limit: int) -> Pending:
        client = self._online_client()
        if target is not None:
            seen = self.recent.require(target)
            info = seen.message.media
            if info is not None and info.size is not None and info.size > limit:
                raise CommandError(f"argument 'message_id': the media is {info.size} bytes, over the media limit of "
                                   f"{limit} bytes (media_max_mb)")
            if seen.raw is None:
                raise CommandError(f"argument 'message_id': {target!r} is too old to download by id here; give its "
                                   "message-upsert's 'media' map instead")
            raw, mimetype = seen.raw.Message, info.mimetype if info else None
            return self.offload(lambda: save_download(self.ctx.bot_dir, target,
                                                      self._call("download", client.download_any, raw),
                                                      mimetype, limit))
        assert media is not None
        import base64

        size = int(media.get("size") or 0)
        if size > limit:
            raise CommandError(f"argument 'media': the media is {size} bytes, over the media limit of {limit} bytes "
                               "(media_max_mb)")
        kind = str(media.get("kind", "document"))
        if kind not in UPLOAD_TYPES:
            raise CommandError(f"argument 'media': unknown kind {kind!r}")
        media_type = UPLOAD_TYPES[kind]
        call = (str(media["direct_path"]), base64.b64decode(media.get("enc_sha256") or ""),
                bytes.fromhex(media.get("sha256") or ""), base64.b64decode(media["media_key"]), size, media_type,
                media_type.to_mms())
        name = str(media.get("sha256") or "media")[:16]
        return self.offload(lambda: save_download(self.ctx.bot_dir, name,
                                                  self._call("download", client.download_media_with_path, *call),
                                                  media.get("mimetype"), limit))

    def subscribe_presence(self: NeonizeBackend, jid: str) -> Pending:
        client = self._online_client()
        return self.offload(self._call, "subscribe_presence", client.subscribe_presence, _jid(jid)).then(
            lambda _: {"jid": jid, "subscribed": True})

    def check_numbers(self: NeonizeBackend, numbers: list[str]) -> Pending:
        client = self._online_client()
        return self.offload(self._call, "check_numbers", client.is_on_whatsapp, *[f"+{n}" for n in numbers]).then(
            lambda found: _numbers_found(numbers, found))

    def user_info(self: NeonizeBackend, jids: list[str]) -> Pending:
        client = self._online_client()
        return self.offload(self._call, "user_info", client.get_user_info, *[_jid(j) for j in jids]).then(_users_found)

    def group_info(self: NeonizeBackend, group: str) -> Pending:
        client = self._online_client()
        return self.offload(self._call, "group_info", client.get_group_info, _jid(group)).then(group_info_dict)

    def reject_call(self: NeonizeBackend, call_id: str, caller: str) -> Pending:
        client = self._online_client()
        return self.offload(self._call, "reject_call", client.reject_call, _jid(caller), call_id).then(
            lambda _: {"call_id": call_id, "caller": caller, "rejected": True})


def _numbers_found(numbers: list[str], found: Any) -> dict[str, Any]:
    by_query = {r.Query.lstrip("+"): r for r in found}
    results = []
    for n in numbers:
        r = by_query.get(n)
        results.append({"query": n, "jid": neonize_messages.user_jid(r.JID) if r is not None and r.IsIn else None,
                        "on_whatsapp": bool(r is not None and r.IsIn)})
    return {"results": results}


def _users_found(found: Any) -> dict[str, Any]:
    users = []
    for entry in found:
        info = entry.UserInfo
        users.append({"jid": neonize_messages.user_jid(entry.JID), "status": info.Status or None,
                      "picture_id": info.PictureID or None,
                      "verified_name": info.VerifiedName.Details.verifiedName or None
                      if info.HasField("VerifiedName") else None,
                      "devices": [neonize_messages.jid(d) for d in info.Devices]})
    return {"users": users}


def _upload_and_send(backend: NeonizeBackend, client: Any, to: str, kind: str, path: str, caption: str | None,
                     file_name: str | None, mimetype: str, context: ContextInfo | None) -> tuple[Message, Any]:
    """On the I/O thread: read the file, upload it (the slow part), build the message, send it."""
    data = Path(path).read_bytes()
    upload = backend._call("upload", client.upload, data, UPLOAD_TYPES[kind])
    common = dict(URL=upload.url, directPath=upload.DirectPath, mediaKey=upload.MediaKey,
                  fileEncSHA256=upload.FileEncSHA256, fileSHA256=upload.FileSHA256, fileLength=upload.FileLength,
                  mimetype=mimetype)
    if kind == "image":
        message = Message(imageMessage=ImageMessage(caption=caption, **common))
    elif kind == "video":
        message = Message(videoMessage=VideoMessage(caption=caption, **common))
    elif kind in ("audio", "voice"):
        message = Message(audioMessage=AudioMessage(PTT=kind == "voice", **common))
    elif kind == "sticker":
        message = Message(stickerMessage=StickerMessage(**common))
    else:
        name = file_name or Path(path).name
        message = Message(documentMessage=DocumentMessage(caption=caption, fileName=name, title=name, **common))
    if context is not None:  # the Message holds a copy of its part: set it there
        getattr(message, _FIELD[kind]).contextInfo.MergeFrom(context)
    return message, backend._call("send_media", client.send_message, _jid(to), message)


_FIELD = {"image": "imageMessage", "video": "videoMessage", "audio": "audioMessage", "voice": "audioMessage",
          "sticker": "stickerMessage", "document": "documentMessage"}


def group_info_dict(info: Any) -> dict[str, Any]:
    """neonize's GroupInfo as the ``group_info`` result (the same keys the simulated one has)."""
    return {
        "group": neonize_messages.jid(info.JID),
        "subject": info.GroupName.Name or None,
        "description": info.GroupTopic.Topic or None,
        "owner": neonize_messages.optional_jid(info.OwnerJID),
        "created": neonize_messages.seconds(int(info.GroupCreated)),
        "announce": bool(info.GroupAnnounce.IsAnnounce),
        "locked": bool(info.GroupLocked.isLocked),
        "ephemeral": int(info.GroupEphemeral.DisappearingTimer) if info.GroupEphemeral.IsEphemeral else 0,
        "participants": [{"jid": neonize_messages.user_jid(p.JID), "is_admin": p.IsAdmin or p.IsSuperAdmin,
                          "is_super_admin": p.IsSuperAdmin, "display_name": p.DisplayName or None}
                         for p in info.Participants],
    }
