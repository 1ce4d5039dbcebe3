"""The schema's compiled fast path never disagrees with its explaining converter.

``from_mapping`` tries a fast converter first and falls back to the explaining one, which
raises the SchemaError with the key path. That is only correct if the fast path accepts
nothing the explaining one refuses, and builds the same value when both accept.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import encode
from protocol.config import BotConfig, SupervisorSettings
from protocol.errors import SchemaError
from protocol.events import DATA_TYPES
from protocol.messages import CLASS_OF
from protocol.schema import (
    _explained_from_mapping,
    _fast,
    _Mismatch,
    from_mapping,
    to_mapping,
)

from .test_protocol import messages, plain

CLASSES = sorted({*CLASS_OF.values(), *DATA_TYPES.values(), BotConfig, SupervisorSettings}, key=lambda c: c.__name__)


def _agree(cls: type, value: object) -> None:
    try:
        fast = _fast(cls)(value)
    except _Mismatch:
        fast = _Mismatch
    try:
        explained = _explained_from_mapping(cls, value, "")
    except SchemaError:
        assert fast is _Mismatch, f"fast path accepted what the explaining converter refuses: {value!r}"
        return
    if fast is not _Mismatch:  # stricter is allowed (the fallback answers), different is not
        assert fast == explained and type(fast) is type(explained)


@settings(max_examples=300)
@given(messages, st.data())
def test_fast_and_explaining_converters_agree_on_mutated_messages(message, data):
    body = msgpack.unpackb(encode(message)[1])
    del body["v"], body["kind"]
    cls = type(message)
    if "data" in body:  # an event: its data is checked against the type's own dataclass
        cls, body = DATA_TYPES[message.type], body["data"]
    key = data.draw(st.sampled_from(sorted(body) or ["x"]))
    body[key] = data.draw(plain | st.sampled_from([True, 1, 1.0, "open", "online", None]))
    _agree(cls, body)


@settings(max_examples=300)
@given(st.sampled_from(CLASSES), st.dictionaries(st.text(max_size=12), plain, max_size=6) | plain)
def test_fast_and_explaining_converters_agree_on_any_plain_value(cls, value):
    _agree(cls, value)


@given(messages)
def test_to_mapping_is_the_inverse_of_from_mapping(message):
    assert from_mapping(type(message), to_mapping(message)) == message


def test_a_refused_value_still_names_its_key_path():
    with pytest.raises(SchemaError) as caught:
        from_mapping(BotConfig, {"id": "b1", "backoff": {"initial": "soon"}})
    assert caught.value.path == "backoff.initial" and "must be a number" in caught.value.reason


@given(messages)
def test_valid_messages_take_the_fast_path(message):
    # the fallback would still answer correctly, but every message on the bus would pay for it
    body = msgpack.unpackb(encode(message)[1])
    del body["v"], body["kind"]
    assert _fast(type(message))(body) == message


# -- a type added later (as teammates add event types) is compiled from its dataclass alone -----
from dataclasses import dataclass, field  # noqa: E402
from typing import Literal  # noqa: E402

from protocol.schema import checked, in_range  # noqa: E402


@dataclass(frozen=True, slots=True)
class _Media:
    kind: Literal["image", "video"]
    size: int = checked(in_range(0))
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class _NewEvent:
    id: str
    at: float
    media: _Media | None = None
    mentions: list[str] = field(default_factory=list)
    parts: tuple[_Media, ...] = ()
    meta: dict[str, int] = field(default_factory=dict)
    flag: bool = False
    score: float | None = None


def test_a_new_dataclass_gets_a_generated_fast_path_that_builds_what_the_explaining_one_builds():
    value = {"id": "x", "at": 1, "media": {"kind": "image", "size": 3}, "mentions": ["a"],
             "parts": [{"kind": "video", "size": 0, "caption": "c"}], "meta": {"k": 1}, "flag": True, "score": 2}
    built = _fast(_NewEvent)(value)
    assert built == _explained_from_mapping(_NewEvent, value, "")
    assert built.at == 1.0 and type(built.at) is float and type(built.score) is float
    assert built.parts == (_Media("video", 0, "c"),)
    assert _fast(_NewEvent)({"id": "y", "at": 2.5}) == _NewEvent("y", 2.5)  # every default


@pytest.mark.parametrize("value, path, reason", [
    ({"at": 1.0}, "id", "missing required key"),
    ({"id": "x", "at": "soon"}, "at", "must be a number, got str 'soon'"),
    ({"id": "x", "at": True}, "at", "must be a number, got bool True"),
    ({"id": "x", "at": 1.0, "flag": 1}, "flag", "must be bool, got int 1"),
    ({"id": "x", "at": 1.0, "media": {"kind": "gif", "size": 1}}, "media.kind", "must be one of 'image', 'video'"),
    ({"id": "x", "at": 1.0, "media": {"kind": "image", "size": -1}}, "media.size", "must be at least 0, got -1"),
    ({"id": "x", "at": 1.0, "mentions": ["a", 2]}, "mentions[1]", "must be str, got int 2"),
    ({"id": "x", "at": 1.0, "extra": 1}, "extra", "unknown key (known keys: at, flag, id, media, mentions, meta, parts, score)"),
])
def test_a_new_dataclass_refuses_bad_values_with_the_key_path_and_a_clear_reason(value, path, reason):
    with pytest.raises(_Mismatch):
        _fast(_NewEvent)(value)
    with pytest.raises(SchemaError) as caught:
        from_mapping(_NewEvent, value)
    assert caught.value.path == path and caught.value.reason.startswith(reason)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["id", "at", "media", "mentions", "parts", "meta", "flag", "score", "x"]),
                       plain | st.sampled_from([{"kind": "image", "size": 1}, [{"kind": "video", "size": 2}]]),
                       max_size=8))
def test_a_new_dataclass_fast_and_explaining_converters_agree(value):
    _agree(_NewEvent, value)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b.pop("seq"), "bad event message: seq: missing required key"),
    (lambda b: b.update(seq="7"), "bad event message: seq: must be an integer, got str '7'"),
    (lambda b: b["data"].update(from_me="no"), "bad event message: data.from_me: must be bool, got str 'no'"),
    (lambda b: b["data"].update(colour=1), "bad event message: data.colour: unknown key (known keys: chat, emoji, from_me,"),
    (lambda b: b.update(type="gossip"), "bad event message: type: must be one of 'connection-update',"),
    (lambda b: b.update(bot="../x"), "bad bot id '../x'"),
])
def test_decode_errors_name_what_is_wrong(mutate, message):
    import time

    from protocol import Event, EventType, MessageUpsert, ProtocolError, decode

    event = Event("s", "b1", 1, 0, time.time(), EventType.MESSAGE_UPSERT,
                  MessageUpsert(id="i", chat="c", sender="c", timestamp=1.0, from_me=False, text="t"))
    body = msgpack.unpackb(encode(event)[1])
    mutate(body)
    with pytest.raises(ProtocolError) as caught:
        decode(msgpack.packb(body))
    assert str(caught.value).startswith(message), str(caught.value)
