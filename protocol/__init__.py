"""The botvisor wire protocol: one definition shared by supervisor, workers and taps.

A leaf package: it imports nothing from ``supervisor`` or ``worker``.
"""

from .codec import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    check_topic,
    decode,
    encode,
    valid_name,
)
from .errors import BotvisorError, ProtocolError, SchemaError
from .events import (
    ConnectionUpdate,
    CredsUpdate,
    ErrorEvent,
    EventData,
    EventType,
    MessageUpsert,
    PresenceUpdate,
    SendStatus,
)
from .whatsapp import (
    CallUpdate,
    GroupUpdate,
    HistorySync,
    LinkPreview,
    Media,
    Quoted,
    ReceiptUpdate,
)
from .messages import (
    SUPERVISOR_BOT,
    Bye,
    Event,
    Heartbeat,
    Hello,
    Kind,
    Message,
    Notice,
    StateChange,
)
from .states import BotStatus, ContainerState
from .topics import bot_prefix, topic_for

__all__ = [
    "MAX_PAYLOAD_BYTES", "PROTOCOL_VERSION", "check_topic", "decode", "encode", "valid_name",
    "BotvisorError", "ProtocolError", "SchemaError",
    "ConnectionUpdate", "CredsUpdate", "ErrorEvent", "EventData", "EventType", "MessageUpsert",
    "PresenceUpdate", "SendStatus",
    "CallUpdate", "GroupUpdate", "HistorySync", "LinkPreview", "Media", "Quoted", "ReceiptUpdate",
    "SUPERVISOR_BOT", "Bye", "Event", "Heartbeat", "Hello", "Kind", "Message", "Notice", "StateChange",
    "BotStatus", "ContainerState", "bot_prefix", "topic_for",
]
