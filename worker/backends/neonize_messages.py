"""whatsmeow's messages, receipts, calls, group changes and history sync -> botvisor event data.

Pure functions over neonize's protobufs, like neonize_events (which registers them). The
shapes are protocol/whatsapp.py's. What whatsmeow hands over, read from its source
(types/events/events.go ``UnwrapRaw``, neonize's goneonize/utils/encoder.go):

- ``Message.Message`` is already unwrapped (ephemeral, view-once, device-sent, edited wrappers
  removed); an edit then is a ``protocolMessage`` of type MESSAGE_EDIT carrying the new
  message, a revoke one of type REVOKE, both keyed by the target's id.
- Timestamps: a message's in milliseconds, receipts', calls' and group changes' in seconds.
- An unset Go ``time.Time`` arrives as -62135596800 (``time.Time{}.Unix()``), not 0.
"""

from __future__ import annotations

import base64
from typing import Any

from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ProtocolMessage
from neonize.utils import Jid2String, JIDToNonAD, extract_text

from protocol import (
    CallUpdate,
    GroupUpdate,
    HistorySync,
    LinkPreview,
    Media,
    MessageUpsert,
    Quoted,
    ReceiptUpdate,
)

#: the content fields that make a message media, in whatsmeow's order, and our kind for each
MEDIA_FIELDS: tuple[tuple[str, str], ...] = (
    ("imageMessage", "image"), ("videoMessage", "video"), ("ptvMessage", "video"), ("audioMessage", "audio"),
    ("documentMessage", "document"), ("stickerMessage", "sticker"),
)
#: fields that carry no content of their own: a message with only these is protocol noise
NOISE_FIELDS = frozenset({"senderKeyDistributionMessage", "messageContextInfo",
                          "fastRatchetKeySenderKeyDistributionMessage", "keepInChatMessage", "placeholderMessage"})
#: the wire's receipt types (neonize's Receipt.ReceiptType) -> botvisor's
RECEIPT_TYPES: dict[int, str] = {
    pb.Receipt.DELIVERED: "delivered", pb.Receipt.SENDER: "sender", pb.Receipt.RETRY: "retry",
    pb.Receipt.READ: "read", pb.Receipt.READ_SELF: "read-self", pb.Receipt.PLAYED: "played",
    pb.Receipt.PLAYED_SELF: "played-self", pb.Receipt.SERVER_ERROR: "server-error",
    pb.Receipt.INACTIVE: "inactive",
}


def jid(value: pb.JID) -> str:
    return Jid2String(value)


def user_jid(value: pb.JID) -> str:
    """A sender without its device part: ``123:4@s.whatsapp.net`` -> ``123@s.whatsapp.net``."""
    return Jid2String(JIDToNonAD(value))


def optional_jid(value: pb.JID) -> str | None:
    return user_jid(value) if value.User and value.Server else None


def seconds(value: int) -> float | None:
    """A Go ``time.Time.Unix()``: None for the zero time (-62135596800) and for 0."""
    return float(value) if value > 0 else None


def _b64(value: bytes) -> str | None:
    return base64.b64encode(value).decode() if value else None


def _content(message: WAMessage) -> tuple[str, Any] | None:
    """The message's one content field (name, value), ignoring the ones that carry no content."""
    for field, value in message.ListFields():
        if field.name not in NOISE_FIELDS:
            return field.name, value
    return None


def media_of(message: WAMessage) -> Media | None:
    for name, kind in MEDIA_FIELDS:
        if not message.HasField(name):
            continue
        part = getattr(message, name)
        if kind == "audio" and part.PTT:
            kind = "voice"
        return Media(
            kind=kind,  # type: ignore[arg-type]
            mimetype=part.mimetype or None,
            size=part.fileLength or None,
            file_name=(part.fileName or None) if name == "documentMessage" else None,
            sha256=part.fileSHA256.hex() or None,
            duration=getattr(part, "seconds", 0) or None,
            width=getattr(part, "width", 0) or None,
            height=getattr(part, "height", 0) or None,
            direct_path=part.directPath or None,
            media_key=_b64(part.mediaKey),
            enc_sha256=_b64(part.fileEncSHA256),
        )
    return None


def _context_info(message: WAMessage) -> Any:
    content = _content(message)
    if content is None or not hasattr(content[1], "contextInfo"):
        return None
    part = content[1]
    return part.contextInfo if part.HasField("contextInfo") else None


def message_type_of(quoted: WAMessage) -> str:
    media = media_of(quoted)
    return media.kind if media else "text"


def _quoted(context: Any) -> Quoted | None:
    if context is None or not context.stanzaID:
        return None
    inner = context.quotedMessage if context.HasField("quotedMessage") else None
    return Quoted(id=context.stanzaID, sender=context.participant or None,
                  text=(extract_text(inner) or None) if inner is not None else None,
                  message_type=message_type_of(inner) if inner is not None else None)


def _link_preview(message: WAMessage) -> LinkPreview | None:
    if not message.HasField("extendedTextMessage"):
        return None
    ext = message.extendedTextMessage
    if not ext.matchedText:
        return None
    return LinkPreview(url=ext.matchedText, title=ext.title or None, description=ext.description or None)


def map_message(ev: pb.Message, now: float) -> MessageUpsert | None:
    """A message, a reaction, an edit or a revoke; None for protocol and system noise (history-sync
    notices, app-state keys, sender keys, ephemeral settings, ...)."""
    info = ev.Info
    source = info.MessageSource
    message = ev.Message
    content = _content(message)
    if content is None:
        return None  # nothing but keys and context: noise
    base = MessageUpsert(
        id=info.ID, chat=jid(source.Chat), sender=user_jid(source.Sender),
        timestamp=info.Timestamp / 1000.0,  # whatsmeow hands milliseconds
        from_me=source.IsFromMe, push_name=info.Pushname or None, is_group=source.IsGroup,
        sender_alt=optional_jid(source.SenderAlt),
    )
    name, part = content
    if name == "protocolMessage":
        if part.type == ProtocolMessage.REVOKE:
            return _replace(base, kind="revoke", message_type="revoke", target_id=part.key.ID)
        if part.type == ProtocolMessage.MESSAGE_EDIT:
            text = extract_text(part.editedMessage) or None
            return _replace(base, kind="edit", message_type="text", target_id=part.key.ID, text=text)
        return None  # history sync notices, app state keys, ephemeral settings: not a bot's message
    if name == "reactionMessage":
        return _replace(base, kind="reaction", message_type="reaction", target_id=part.key.ID, emoji=part.text)
    media = media_of(message)
    context = _context_info(message)
    mentions = list(context.mentionedJID) if context is not None and context.mentionedJID else None
    return _replace(
        base, text=extract_text(message) or None,
        message_type=media.kind if media else (info.MediaType or info.Type or "unknown"),
        quoted=_quoted(context), media=media, mentions=mentions, link_preview=_link_preview(message),
    )


def _replace(base: MessageUpsert, **changes: Any) -> MessageUpsert:
    from dataclasses import replace

    return replace(base, **changes)


def map_receipt(ev: pb.Receipt, now: float) -> ReceiptUpdate | None:
    if ev.Type not in RECEIPT_TYPES:
        return None  # peer and history-sync receipts are the phone talking to itself
    source = ev.MessageSource
    return ReceiptUpdate(chat=jid(source.Chat), sender=user_jid(source.Sender), message_ids=list(ev.MessageIDs),
                         type=RECEIPT_TYPES[ev.Type], timestamp=seconds(ev.Timestamp) or now,  # type: ignore[arg-type]
                         is_group=source.IsGroup)


def map_call_offer(ev: pb.CallOffer, now: float) -> CallUpdate:
    meta = ev.basicCallMeta
    video = any(child.Tag == "video" for child in ev.data.Nodes) if ev.HasField("data") else None
    return _call_meta(meta, "offer", now, is_video=video,
                      is_group=any(child.Tag == "group" for child in ev.data.Nodes) if ev.HasField("data") else None)


def _call_meta(meta: pb.BasicCallMeta, state: str, now: float, **extra: Any) -> CallUpdate:
    creator = meta.callCreator if meta.callCreator.User else getattr(meta, "from")
    return CallUpdate(call_id=meta.callID, caller=user_jid(creator), state=state,  # type: ignore[arg-type]
                      timestamp=seconds(meta.timestamp) or now, caller_alt=optional_jid(meta.callCreatorAlt),
                      **extra)


def map_call_accept(ev: pb.CallAccept, now: float) -> CallUpdate:
    return _call_meta(ev.basicCallMeta, "accept", now)


def map_call_terminate(ev: pb.CallTerminate, now: float) -> CallUpdate:
    return _call_meta(ev.basicCallMeta, "terminate", now, reason=ev.reason or None)


def map_group_changes(ev: pb.GroupInfoEvent, now: float) -> list[GroupUpdate]:
    """One GroupUpdate per change: whatsmeow batches several changes in one GroupInfo event."""
    group = jid(ev.JID)
    ts = seconds(ev.Timestamp) or now
    actor = optional_jid(ev.Sender) if ev.HasField("Sender") else None
    out: list[GroupUpdate] = []
    for action, members in (("join", ev.Join), ("leave", ev.Leave), ("promote", ev.Promote), ("demote", ev.Demote)):
        if members:
            out.append(GroupUpdate(group=group, action=action, timestamp=ts, actor=actor,  # type: ignore[arg-type]
                                   participants=[user_jid(m) for m in members]))
    if ev.HasField("Name"):
        out.append(GroupUpdate(group=group, action="subject", timestamp=ts, actor=actor, subject=ev.Name.Name))
    if ev.HasField("Topic"):
        out.append(GroupUpdate(group=group, action="description", timestamp=ts, actor=actor,
                               description=ev.Topic.Topic))
    if ev.HasField("Announce"):
        out.append(GroupUpdate(group=group, action="announce", timestamp=ts, actor=actor,
                               value=int(ev.Announce.IsAnnounce)))
    if ev.HasField("Locked"):
        out.append(GroupUpdate(group=group, action="locked", timestamp=ts, actor=actor, value=int(ev.Locked.isLocked)))
    if ev.HasField("Ephemeral"):
        out.append(GroupUpdate(group=group, action="ephemeral", timestamp=ts, actor=actor,
                               value=int(ev.Ephemeral.DisappearingTimer) if ev.Ephemeral.IsEphemeral else 0))
    return out


def map_joined_group(ev: pb.JoinedGroup, now: float) -> GroupUpdate:
    """The bot itself was added to a group (or created one)."""
    info = ev.GroupInfo
    return GroupUpdate(group=jid(info.JID), action="join", timestamp=now,
                       actor=optional_jid(ev.Sender) if ev.HasField("Sender") else None,
                       subject=info.GroupName.Name or None if info.HasField("GroupName") else None,
                       participants=[user_jid(p.JID) for p in info.Participants] or None)


def map_history_sync(ev: pb.HistorySync, now: float) -> HistorySync:
    data = ev.Data
    return HistorySync(sync_type=data.DESCRIPTOR.fields_by_name["syncType"].enum_type.values_by_number[data.syncType].name
                       if data.HasField("syncType") else "UNKNOWN",
                       conversations=len(data.conversations),
                       messages=sum(len(c.messages) for c in data.conversations),
                       progress=data.progress if data.HasField("progress") else None)
