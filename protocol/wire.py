"""The fast decoder's types: msgspec Structs generated from the message dataclasses.

``protocol/schema.py`` explains what is wrong with a payload; decoding there costs ~10 µs per
event, most of it Python. msgspec decodes msgpack straight into Structs in C (~1 µs), with
the same strictness the dataclasses' converter has: unknown keys refused
(``forbid_unknown_fields``), exact types (no bool for an int, no bytes for a str), literals and
enums by value, floats finite. Each Struct is derived from its dataclass at import, so a field
added to protocol/messages.py, events.py or whatsapp.py is on the fast path at once, and the
dataclasses stay the one definition of the wire format.

msgspec only answers valid or not; when it refuses, ``codec.decode`` runs the explaining
converter on the same payload for the error message (or, where msgspec is stricter than the
schema, e.g. a version sent as ``2.0``, for the message itself).

An event's ``data`` shape depends on its ``type``, a field of the envelope (no tag msgspec's
unions can use), so the envelope keeps ``data`` as raw msgpack and the codec decodes it with
its type's Struct. Structs are what the supervisor's hot path reads (attribute for attribute
the dataclasses' fields); ``to_dataclass`` gives everyone else the dataclass.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from .events import DATA_TYPES
from .messages import CLASS_OF, Event, Kind
from .schema import to_mapping

#: the ``v`` every payload carries (re-exported by the codec)
PROTOCOL_VERSION = 2
#: as the schema: nan and the infinities are refused (nan fails both bounds)
_FINITE = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class Unsupported(TypeError):
    """A field type the Structs cannot mirror exactly: its class keeps the explaining path only."""


def _wire_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(lambda a, b: a | b, [_wire_type(t) for t in typing.get_args(tp)])
    if origin is Literal:
        return tp
    if origin is list:
        return list[_wire_type(typing.get_args(tp)[0])]  # type: ignore[misc]
    if tp is type(None) or tp in (str, int, bool):
        return tp
    if tp is float:
        return _FINITE
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if dataclasses.is_dataclass(tp):
        return struct_of(tp)  # type: ignore[arg-type]
    # Any, dicts, bytes, tuples...: msgspec's rules for these differ from the schema's (map keys,
    # ext types), so they are not mirrored
    raise Unsupported(f"no Struct mirrors {tp!r} exactly")


@functools.cache
def struct_of(cls: type, kind: str | None = None) -> type[msgspec.Struct]:
    """The Struct that decodes exactly what ``from_mapping(cls, ...)`` accepts; with ``kind``, a
    whole message (``v`` and the ``kind`` tag added)."""
    hints = typing.get_type_hints(cls)
    fields: list[Any] = [("v", Literal[PROTOCOL_VERSION])] if kind is not None else []  # type: ignore[valid-type]
    for f in dataclasses.fields(cls):
        if f.metadata.get("check") is not None:
            raise Unsupported(f"{cls.__name__}.{f.name} has a range check")
        tp = _wire_type(hints[f.name])
        if kind == Kind.EVENT and f.name == "data":
            tp = msgspec.Raw  # decoded by its type's Struct (see the module's docstring)
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    tagged = {"tag_field": "kind", "tag": str(kind)} if kind is not None else {}
    # gc=False: a decoded message holds plain data only (no cycles), and the collector need not
    # walk thousands of them in the history
    return msgspec.defstruct(f"Wire{cls.__name__}", fields, kw_only=True, forbid_unknown_fields=True,
                             frozen=kind != Kind.EVENT, gc=False, module=__name__, namespace={"DATACLASS": cls},
                             **tagged)


def _messages() -> dict[Kind, type[msgspec.Struct]]:
    out = {}
    for kind, cls in CLASS_OF.items():
        try:
            out[kind] = struct_of(cls, kind)
        except Unsupported:
            pass  # decoded by the explaining path alone
    return out


#: the Struct of every message kind (an Event's ``data`` raw: see DATA_DECODERS)
MESSAGES = _messages()
#: one decoder for every kind: msgspec picks the Struct by the ``kind`` tag
DECODER = msgspec.msgpack.Decoder(functools.reduce(lambda a, b: a | b, MESSAGES.values()))
EVENT = MESSAGES.get(Kind.EVENT)


def _data_decoders() -> dict[str, msgspec.msgpack.Decoder[Any]]:
    out = {}
    for event_type, cls in DATA_TYPES.items():
        try:
            out[event_type.value] = msgspec.msgpack.Decoder(struct_of(cls))
        except Unsupported:
            pass
    return out


#: event type value -> the decoder of its data's Struct
DATA_DECODERS = _data_decoders()

#: message class (dataclass or Struct) -> its kind's value: dispatch that serves both forms
KIND_NAME: dict[type, str] = {**{cls: kind.value for kind, cls in CLASS_OF.items()},
                              **{s: kind.value for kind, s in MESSAGES.items()}}


@functools.cache
def _converter(struct: type[msgspec.Struct]) -> Callable[[Any], Any]:
    """Struct instance -> its dataclass (nested Structs converted too), generated as one call
    with every field passed by position, as protocol/schema.py generates its converters."""
    cls = struct.DATACLASS  # type: ignore[attr-defined]
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {"cls": cls, "convert": to_dataclass}
    args = [f"convert(s.{f.name})" if _nested(hints[f.name]) else f"s.{f.name}" for f in dataclasses.fields(cls)]
    source = f"def build(s):\n    return cls({', '.join(args)})"
    exec(compile(source, f"<wire to {cls.__qualname__}>", "exec"), env)  # noqa: S102
    return env["build"]  # type: ignore[no-any-return]


def _nested(tp: Any) -> bool:
    """Whether a value of annotation ``tp`` may hold a Struct to convert."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list):
        return any(_nested(t) for t in typing.get_args(tp))
    return dataclasses.is_dataclass(tp)


def to_dataclass(value: Any) -> Any:
    """The dataclass form of a decoded Struct (a dataclass, or plain data, is returned as is);
    an Event's ``data`` must be decoded already (codec.decode does it)."""
    if isinstance(value, list):
        return [to_dataclass(x) for x in value]
    if not isinstance(value, msgspec.Struct):
        return value
    if type(value) is EVENT:
        return Event(value.server, value.bot, value.pid, value.seq, value.ts, value.type, to_dataclass(value.data))
    return _converter(type(value))(value)


def as_mapping(data: Any) -> Any:
    """``schema.to_mapping`` of an event's data, whether it is the Struct or the dataclass."""
    return to_mapping(to_dataclass(data))
