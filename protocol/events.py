"""The bot event types (the five of the original design, then WhatsApp's and botvisor's own) and the shape of each.

On the wire an event's ``data`` is a map with exactly these keys (absent optional keys are
left out). docs/protocol.md documents every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .whatsapp import CallUpdate, GroupUpdate, HistorySync, LinkPreview, Media, MessageKind, Quoted, ReceiptUpdate


class EventType(StrEnum):
    CONNECTION_UPDATE = "connection-update"
    MESSAGE_UPSERT = "message-upsert"
    CREDS_UPDATE = "creds-update"
    PRESENCE_UPDATE = "presence-update"
    ERROR = "error"
    RECEIPT_UPDATE = "receipt-update"
    CALL_UPDATE = "call-update"
    GROUP_UPDATE = "group-update"
    HISTORY_SYNC = "history-sync"
    SEND_STATUS = "send-status"


@dataclass(frozen=True, slots=True)
class ConnectionUpdate:
    connection: Literal["connecting", "open", "close"]
    #: a QR code to scan (the string to encode), while pairing
    qr: str | None = None
    #: a phone pairing code to type on the phone, while pairing by phone number
    pair_code: str | None = None
    #: why the connection closed (``dial failed: ...``, ``keepalive timeout``, ...)
    reason: str | None = None
    #: 1-based connection attempt number since the worker started or last connected
    attempt: int | None = None
    #: seconds until the next connection attempt, on ``close`` when the worker will retry
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class MessageUpsert:
    id: str
    chat: str
    sender: str
    #: unix seconds
    timestamp: float
    from_me: bool
    #: the text, when the message has text (conversation, extended text, caption)
    text: str | None = None
    #: ``text``, ``image``, ``reaction``, ... (whatsmeow's message type)
    message_type: str = "text"
    push_name: str | None = None
    is_group: bool = False
    #: a new message, or an action on the earlier message ``target_id`` (protocol/whatsapp.py)
    kind: MessageKind = "message"
    #: reaction, edit, revoke: the id of the message acted on
    target_id: str | None = None
    #: reaction: the emoji ("" when a reaction is taken back)
    emoji: str | None = None
    #: the message this one replies to
    quoted: Quoted | None = None
    media: Media | None = None
    #: JIDs mentioned in the text
    mentions: list[str] | None = None
    link_preview: LinkPreview | None = None
    #: the sender's other address: the phone-number JID when ``sender`` is an ``@lid``, and back
    sender_alt: str | None = None


@dataclass(frozen=True, slots=True)
class CredsUpdate:
    verified: bool
    phone_number: str | None = None
    #: unix seconds of the metadata's last update
    last_updated: float | None = None
    #: what changed: ``paired``, ``connected``, ``logged-out``, ``expired``, ``restored``
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    #: whose presence (a JID)
    jid: str
    presence: Literal["available", "unavailable", "composing", "paused", "recording"]
    #: the chat, for chat presence (typing in a chat)
    chat: str | None = None
    #: unix seconds, when known
    last_seen: float | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    #: a stable machine-readable code: ``logged-out``, ``temporary-ban``, ``client-outdated``,
    #: ``stream-replaced``, ``dial-failed``, ``corrupt-store``, ``crash``, ...
    code: str
    message: str
    #: fatal errors end the worker with exit_codes.FATAL; the container goes to failed
    fatal: bool = False
    #: WhatsApp's numeric code when there is one (401, 402, 405, ...)
    status: int | None = None
    #: unix seconds when a temporary ban ends
    expires_at: float | None = None
    #: the file concerned, for storage errors
    file: str | None = None
    #: for an app's ``handler-error`` / ``handler-timeout``: the handler (module.function) and the chat
    handler: str | None = None
    chat: str | None = None
    #: the exception's type name, and a short traceback (the bot's log has the whole one)
    exception: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class SendStatus:
    """The outcome of one accepted send (worker/outbox.py), published once per send id."""

    #: the send id the ``send`` (``send_media``, ``react``, ...) reply carried
    id: str
    state: Literal["sent", "failed"]
    #: the operation: ``send``, ``send_media``, ``react``, ``edit``, ``revoke``
    op: str
    #: the WhatsApp message id it went (or was to go) under; absent when none was known
    message_id: str | None = None
    #: the chat it went to
    to: str | None = None
    #: why it failed
    reason: str | None = None
    #: attempts made (more than one after an interrupted or offline attempt)
    attempts: int | None = None
    #: unix seconds: when it was sent (the backend's timestamp) or given up
    timestamp: float | None = None


EventData = (ConnectionUpdate | MessageUpsert | CredsUpdate | PresenceUpdate | ErrorEvent
             | ReceiptUpdate | CallUpdate | GroupUpdate | HistorySync | SendStatus)

DATA_TYPES: dict[EventType, type] = {
    EventType.CONNECTION_UPDATE: ConnectionUpdate,
    EventType.MESSAGE_UPSERT: MessageUpsert,
    EventType.CREDS_UPDATE: CredsUpdate,
    EventType.PRESENCE_UPDATE: PresenceUpdate,
    EventType.ERROR: ErrorEvent,
    EventType.RECEIPT_UPDATE: ReceiptUpdate,
    EventType.CALL_UPDATE: CallUpdate,
    EventType.GROUP_UPDATE: GroupUpdate,
    EventType.HISTORY_SYNC: HistorySync,
    EventType.SEND_STATUS: SendStatus,
}

EVENT_OF_DATA: dict[type, EventType] = {cls: kind for kind, cls in DATA_TYPES.items()}
