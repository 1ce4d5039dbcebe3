"""The fast decoder (protocol/wire.py, msgspec) decides exactly as the explaining one does.

``decode`` tries the Structs first and runs protocol/schema.py only when msgspec refuses, so
the two must agree on every input: the same message for a valid payload, the same
ProtocolError text for a refused one. These tests feed both the same payloads.
"""

from __future__ import annotations

import dataclasses

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import Event, Heartbeat, ProtocolError, decode, encode
from protocol.codec import _explained_decode, decode_wire
from protocol.events import DATA_TYPES
from protocol.messages import CLASS_OF
from protocol.schema import to_mapping
from protocol.wire import (
    DATA_DECODERS,
    DECODER,
    MESSAGES,
    as_mapping,
    struct_of,
    to_dataclass,
)

from .malformed_messages import WRONG, samples
from .test_protocol import messages, plain


def outcome(decoder, raw):
    try:
        return "ok", decoder(raw)
    except ProtocolError as exc:
        return "refused", str(exc)


def test_every_message_kind_and_event_type_has_a_struct_with_its_dataclass_fields():
    assert set(MESSAGES) == set(CLASS_OF)  # nothing silently left to the slow path
    assert set(DATA_DECODERS) == {t.value for t in DATA_TYPES}
    for kind, cls in CLASS_OF.items():
        names = [f.name for f in dataclasses.fields(cls)]
        assert MESSAGES[kind].__struct_fields__ == ("v", *names)
    for cls in DATA_TYPES.values():
        assert struct_of(cls).__struct_fields__ == tuple(f.name for f in dataclasses.fields(cls))


@given(messages)
def test_a_valid_message_decodes_to_the_same_value_on_both_paths(message):
    payload = encode(message)[1]
    fast = decode_wire(payload)
    assert isinstance(fast, msgspec.Struct)  # the fast path took it
    assert to_dataclass(fast) == _explained_decode(payload) == decode(payload) == message
    for field in dataclasses.fields(message):  # what the supervisor reads, attribute for attribute
        if field.name != "data":
            assert getattr(fast, field.name) == getattr(message, field.name)
    if isinstance(message, Event):
        assert as_mapping(fast.data) == to_mapping(message.data)


def changed(message, path, value):
    body = msgpack.unpackb(encode(message)[1])
    target = body if len(path) == 1 else body["data"]
    if value is DELETE:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return msgpack.packb(body, use_bin_type=True)


DELETE = object()


@pytest.mark.parametrize("message", samples("srv", "b1", 42), ids=lambda m: type(m).__name__)
def test_every_key_made_wrong_missing_or_unknown_gets_the_same_answer_from_both(message):
    body = msgpack.unpackb(encode(message)[1])
    paths = [(k,) for k in body] + [("data", k) for k in body.get("data", {})] + [("extra",), ("data", "extra")]
    refused = 0
    for path in paths:
        if path[0] == "data" and "data" not in body:
            continue
        for value in [*WRONG, DELETE]:
            raw = changed(message, path, value)
            fast, slow = outcome(decode, raw), outcome(_explained_decode, raw)
            assert fast == slow, (path, value)
            refused += fast[0] == "refused"
    assert refused > 20


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(plain)
def test_any_msgpack_gets_the_same_answer_from_both(obj):
    raw = msgpack.packb(obj, use_bin_type=True)
    assert outcome(decode, raw) == outcome(_explained_decode, raw)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(messages, st.data())
def test_a_message_with_one_key_changed_gets_the_same_answer_from_both(message, data):
    body = msgpack.unpackb(encode(message)[1])
    target = body["data"] if "data" in body and data.draw(st.booleans()) else body
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(plain)
    raw = msgpack.packb(body, use_bin_type=True)
    assert outcome(decode, raw) == outcome(_explained_decode, raw)


def test_nan_infinity_bools_for_ints_and_bytes_for_strings_are_refused_with_the_schemas_words():
    good = msgpack.unpackb(encode(Heartbeat("srv", "b1", 42, 7, 1.5, "online"))[1])
    for key, value, words in [("ts", float("nan"), "ts: must be a finite number"),
                              ("ts", float("inf"), "ts: must be a finite number"),
                              ("seq", True, "seq: must be an integer"),
                              ("server", b"srv", "server: must be str")]:
        with pytest.raises(ProtocolError, match=words):
            decode(msgpack.packb({**good, key: value}, use_bin_type=True))


def test_what_only_msgspec_refuses_still_decodes_through_the_schema():
    """The fast path may be stricter (a version sent as 2.0), never looser: the schema decides."""
    body = msgpack.unpackb(encode(Heartbeat("srv", "b1", 42, 7, 1.5, "online"))[1])
    raw = msgpack.packb({**body, "v": 2.0})
    with pytest.raises(msgspec.ValidationError):
        DECODER.decode(raw)
    assert decode_wire(raw) == decode(raw) == Heartbeat("srv", "b1", 42, 7, 1.5, "online")
