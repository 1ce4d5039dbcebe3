"""The one encoder and the one decoder of the wire format (docs/protocol.md).

A payload is a msgpack map: ``v`` (PROTOCOL_VERSION), ``kind``, the header fields, and the
kind's own fields. ``decode`` raises ProtocolError, and nothing else, for any input that is
not a valid message: garbage bytes, a non-map, an unknown version or kind, missing or
unknown keys, wrong types, a bad bot id, or more than MAX_PAYLOAD_BYTES.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgpack
import msgspec

from . import wire
from .errors import ProtocolError, SchemaError
from .events import DATA_TYPES, EventType
from .messages import CLASS_OF, KIND_OF, SUPERVISOR_BOT, Event, Kind, Message
from .schema import from_mapping, to_mapping
from .topics import topic_for
from .wire import PROTOCOL_VERSION, to_dataclass

#: the largest payload accepted; a WhatsApp text is at most 64 KiB, so this leaves room
MAX_PAYLOAD_BYTES = 1024 * 1024

#: bot ids and server names: also what keeps a bot's directory inside the auth root
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


#: names already found valid: every message carries two, and a fleet has few distinct ones
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 65536


def _known_valid(name: object) -> bool:
    if name in _VALID_NAMES:
        return True
    if not valid_name(name):
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_MAX:  # bounded: a flood of new names cannot grow it
        _VALID_NAMES.add(name)  # type: ignore[arg-type]
    return True


def encode(message: Message) -> tuple[bytes, bytes]:
    """``(topic, payload)`` frames for ``message``."""
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": KIND_OF[type(message)].value}
    body.update(to_mapping(message))
    return topic_for(message).encode(), msgpack.packb(body, use_bin_type=True)


def unpack_map(raw: bytes, what: str = "payload") -> dict[str, Any]:
    """The msgpack map in ``raw``, version checked and removed; ProtocolError otherwise."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"{what} must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{what} of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for bad input; all mean the same here
        detail = f": {exc}" if str(exc) else ""
        raise ProtocolError(f"{what} is not valid msgpack ({exc.__class__.__name__}{detail})") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"{what} must be a msgpack map, got {type(body).__name__}")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (this end speaks {PROTOCOL_VERSION})")
    return body


#: kind name -> (Kind, class): a str-keyed lookup per message (an Enum call, or an Enum key's
#: hash, is Python code)
_KINDS = {kind.value: (kind, CLASS_OF[kind]) for kind in Kind}


def decode(payload: bytes) -> Message:
    """The message in ``payload``, or ProtocolError saying what is wrong with it."""
    return to_dataclass(decode_wire(payload))


def decode_wire(payload: bytes) -> Any:
    """``decode`` without the dataclasses: the message as its protocol/wire.py Struct (an
    Event's ``data`` decoded too), attribute for attribute what ``decode`` returns; the
    supervisor's hot path reads these. Where msgspec refuses, the explaining converter decides
    (ProtocolError naming what is wrong, or the dataclass itself), so nothing it would accept
    is lost and every refusal reads as before."""
    if type(payload) is not bytes or len(payload) > MAX_PAYLOAD_BYTES:
        return _explained_decode(payload)
    try:
        message = wire.DECODER.decode(payload)
        if type(message) is wire.EVENT:
            message.data = wire.DATA_DECODERS[message.type._value_].decode(message.data)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return _explained_decode(payload)
    if (message.server not in _VALID_NAMES or message.bot not in _VALID_NAMES
            or message.seq < 0 or message.pid < 0):  # names seen before: no regex, no call
        _check_header(message)
    return message


def _check_header(message: Any) -> None:
    if not _known_valid(message.server):
        raise ProtocolError(f"bad server name {message.server!r}")
    if not (_known_valid(message.bot) or message.bot == SUPERVISOR_BOT):
        raise ProtocolError(f"bad bot id {message.bot!r}")
    if message.seq < 0 or message.pid < 0:
        raise ProtocolError("seq and pid must not be negative")


def _explained_decode(payload: bytes) -> Message:
    """The schema's converter (protocol/schema.py): slower, and says what is wrong."""
    body = unpack_map(payload)
    kind_name = body.pop("kind", None)
    found = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if found is None:
        raise ProtocolError(f"unknown message kind {kind_name!r}")
    kind, cls = found
    try:
        if cls is Event:
            message = _decode_event(body)
        else:
            message = from_mapping(cls, body)
    except SchemaError as exc:
        raise ProtocolError(f"bad {kind} message: {exc}") from None
    except (TypeError, ValueError) as exc:  # e.g. unhashable keys nested in data
        raise ProtocolError(f"bad {kind} message: {exc}") from None
    _check_header(message)
    return message


def _decode_event(body: dict[str, Any]) -> Event:
    if "data" not in body:
        raise SchemaError("data", "missing required key")
    raw_data = body.pop("data")
    # Validate the header with `data` left out, then the data against its type's shape.
    header = from_mapping(_EventHeader, body)
    data = from_mapping(_data_type(header.type), raw_data, "data")
    return Event(header.server, header.bot, header.pid, header.seq, header.ts, header.type, data)


#: event type value -> data class, derived from DATA_TYPES (a str key hashes in C, an Enum's
#: hash is Python code); rebuilt whenever DATA_TYPES has grown
_DATA_BY_VALUE: dict[str, type] = {}


def _data_type(event_type: EventType) -> type:
    cls = _DATA_BY_VALUE.get(event_type._value_)
    if cls is None:
        _DATA_BY_VALUE.update({t.value: c for t, c in DATA_TYPES.items()})
        cls = DATA_TYPES[event_type]
    return cls


@dataclass(slots=True)  # not frozen: it never leaves _decode_event, and plain stores are cheaper
class _EventHeader:
    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    type: EventType


def check_topic(topic: bytes, message: Message) -> None:
    """Raise ProtocolError unless ``topic`` is the topic ``message`` must travel under."""
    expected = topic_for(message).encode()
    if topic != expected:
        raise ProtocolError(f"topic {topic[:80]!r} does not match the message (expected {expected!r})")
