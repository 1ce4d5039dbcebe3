"""The WhatsApp message model: the parts of a message and the event types beyond the original five.

Designed once for both backends (neonize maps whatsmeow's protobufs into these, the simulated
backend builds them directly), documented field by field in docs/protocol.md. Every field is
plain data (str, int, float, bool, lists of those, nested maps), so a tap in any language reads
them with msgpack alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: what a ``message-upsert`` is: a new message, or an action on an earlier one (``target_id``)
MessageKind = Literal["message", "reaction", "edit", "revoke"]
MESSAGE_KINDS: tuple[str, ...] = ("message", "reaction", "edit", "revoke")

#: the kinds of media a message may carry (and ``send_media`` may send)
MediaKind = Literal["image", "video", "audio", "voice", "document", "sticker"]
MEDIA_KINDS: tuple[str, ...] = ("image", "video", "audio", "voice", "document", "sticker")


@dataclass(frozen=True, slots=True)
class Quoted:
    """The message a reply quotes (whatsmeow's ContextInfo: StanzaID, Participant, QuotedMessage)."""

    id: str
    #: who wrote the quoted message (a JID), when WhatsApp says
    sender: str | None = None
    #: the quoted message's text or caption, when it had one
    text: str | None = None
    #: the quoted message's type (``text``, ``image``, ...)
    message_type: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """A message's attachment, with everything ``download`` needs to fetch and decrypt it."""

    kind: MediaKind
    mimetype: str | None = None
    #: bytes, as the sender declared it
    size: int | None = None
    file_name: str | None = None
    #: of the plaintext file (hex), to verify the download
    sha256: str | None = None
    #: seconds, for audio, voice and video
    duration: int | None = None
    width: int | None = None
    height: int | None = None
    #: WhatsApp's CDN path and keys (base64): what whatsmeow's Download needs; opaque to bots
    direct_path: str | None = None
    media_key: str | None = None
    enc_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class LinkPreview:
    url: str
    title: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiptUpdate:
    """``receipt-update``: the recipient's phone got (``delivered``), read or played messages."""

    chat: str
    #: who sent the receipt (in a group: the member who read it)
    sender: str
    message_ids: list[str]
    type: Literal["delivered", "read", "played", "read-self", "played-self", "sender", "retry", "server-error",
                  "inactive", "other"]
    #: unix seconds
    timestamp: float
    is_group: bool = False


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """``call-update``: an incoming call was offered, accepted, ended or rejected elsewhere."""

    call_id: str
    #: who calls (a JID)
    caller: str
    state: Literal["offer", "accept", "terminate", "reject", "other"]
    #: unix seconds
    timestamp: float
    is_video: bool | None = None
    is_group: bool | None = None
    #: for ``terminate``: why, as WhatsApp says
    reason: str | None = None
    #: the caller's phone-number JID when ``caller`` is an ``@lid``
    caller_alt: str | None = None


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """``group-update``: members joined, left, were promoted or demoted; the subject or settings changed."""

    group: str
    action: Literal["join", "leave", "promote", "demote", "subject", "description", "announce", "locked",
                    "ephemeral", "other"]
    #: unix seconds
    timestamp: float
    #: who made the change, when WhatsApp says
    actor: str | None = None
    #: the members concerned (join, leave, promote, demote)
    participants: list[str] | None = None
    #: the new subject or description
    subject: str | None = None
    description: str | None = None
    #: announce/locked/ephemeral: the new setting (ephemeral: seconds, 0 = off)
    value: int | None = None


@dataclass(frozen=True, slots=True)
class HistorySync:
    """``history-sync``: a chunk of past chats arrived after pairing (a summary; the messages are
    not republished one by one)."""

    sync_type: str
    conversations: int
    messages: int
    #: 0..100 when WhatsApp reports it
    progress: int | None = None
