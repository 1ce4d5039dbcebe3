"""Request/reply messages: operators -> supervisor (control) and supervisor -> worker (commands).

A request is a msgpack map ``{v, id, command, args}``; its reply is ``{v, id, ok, result}`` or
``{v, id, ok: false, error}``. Every request gets exactly one reply.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .codec import PROTOCOL_VERSION, unpack_map
from .errors import ProtocolError, SchemaError
from .schema import from_mapping, to_mapping


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
    """msgpack fallback for values in results: dataclasses and enums as plain data, else text."""
    if (dataclasses.is_dataclass(obj) and not isinstance(obj, type)) or isinstance(obj, enum.Enum):
        return to_mapping(obj, drop_none=False)
    return str(obj)


def _unpack(raw: bytes, cls: type) -> Any:
    what = cls.__name__.lower()
    body = unpack_map(raw, what)
    try:
        return from_mapping(cls, body)
    except SchemaError as exc:
        raise ProtocolError(f"bad {what}: {exc}") from None


def encode_request(request: Request) -> bytes:
    return _pack(request)


def decode_request(raw: bytes) -> Request:
    return _unpack(raw, Request)


def encode_reply(reply: Reply) -> bytes:
    return _pack(reply)


def decode_reply(raw: bytes) -> Reply:
    return _unpack(raw, Reply)
