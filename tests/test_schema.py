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
