"""Request/reply messages: operators -> supervisor (control) and supervisor -> worker (commands).

A request is a msgpack map ``{v, id, command, args}``; its reply is ``{v, id, ok, result}`` or
``{v, id, ok: false, error}``. Every request gets exactly one reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from .codec import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION
from .errors import ProtocolError, SchemaError
from .schema import from_mapping


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    ok: bool
    result: Any = None
    error: str | None = None


def ok(request_id: str, result: Any = None) -> Reply:
    return Reply(request_id, True, result=result)


def error(request_id: str, reason: str) -> Reply:
    return Reply(request_id, False, error=reason)


def _pack(obj: Request | Reply) -> bytes:
    body = {"v": PROTOCOL_VERSION}
    for name in obj.__dataclass_fields__:
        value = getattr(obj, name)
        if value is not None:
            body[name] = value
    return msgpack.packb(body, use_bin_type=True, default=_plain)


def _plain(obj: Any) -> Any:
    """msgpack fallback for values in results: dataclasses, enums, paths."""
    import dataclasses
    import enum

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    return str(obj)


def _unpack(raw: bytes, cls: type) -> Any:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{cls.__name__.lower()} of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ProtocolError(f"{cls.__name__.lower()} is not valid msgpack ({exc.__class__.__name__})") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"{cls.__name__.lower()} must be a msgpack map, got {type(body).__name__}")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (this end speaks {PROTOCOL_VERSION})")
    try:
        return from_mapping(cls, body)
    except SchemaError as exc:
        raise ProtocolError(f"bad {cls.__name__.lower()}: {exc}") from None


def encode_request(request: Request) -> bytes:
    return _pack(request)


def decode_request(raw: bytes) -> Request:
    return _unpack(raw, Request)


def encode_reply(reply: Reply) -> bytes:
    return _pack(reply)


def decode_reply(raw: bytes) -> Reply:
    return _unpack(raw, Reply)
