"""The wire format: round trips, and every malformed input refused with ProtocolError alone."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    SUPERVISOR_BOT,
    BotStatus,
    Bye,
    ConnectionUpdate,
    ContainerState,
    CredsUpdate,
    ErrorEvent,
    Event,
    EventType,
    Heartbeat,
    Hello,
    MessageUpsert,
    Notice,
    PresenceUpdate,
    ProtocolError,
    SendStatus,
    StateChange,
    check_topic,
    decode,
    encode,
)
from protocol.control import (
    Request,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
    ok,
)
from protocol.events import EVENT_OF_DATA
from protocol.signing import new_secret, sign, verify

names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
text = st.text(max_size=40)
seconds = st.floats(min_value=0, max_value=4e9, allow_nan=False)
opt = lambda s: st.none() | s  # noqa: E731
header = dict(server=names, bot=names, pid=st.integers(0, 2**31), seq=st.integers(0, 2**40), ts=seconds)

event_data = st.one_of(
    st.builds(ConnectionUpdate, connection=st.sampled_from(["connecting", "open", "close"]), qr=opt(text),
              pair_code=opt(text), reason=opt(text), attempt=opt(st.integers(0, 100)), retry_in=opt(seconds)),
    st.builds(MessageUpsert, id=text, chat=text, sender=text, timestamp=seconds, from_me=st.booleans(),
              text=opt(text), message_type=text, push_name=opt(text), is_group=st.booleans()),
    st.builds(CredsUpdate, verified=st.booleans(), phone_number=opt(text), last_updated=opt(seconds),
              reason=opt(text)),
    st.builds(PresenceUpdate, jid=text, presence=st.sampled_from(["available", "unavailable", "composing"]),
              chat=opt(text), last_seen=opt(seconds)),
    st.builds(ErrorEvent, code=text, message=text, fatal=st.booleans(), status=opt(st.integers(0, 999)),
              expires_at=opt(seconds), file=opt(text)),
    st.builds(SendStatus, id=text, state=st.sampled_from(["sent", "failed"]), op=text, message_id=opt(text),
              to=opt(text), reason=opt(text), attempts=opt(st.integers(0, 100)), timestamp=opt(seconds)),
)


@st.composite
def events(draw):
    data = draw(event_data)
    return Event(**{k: draw(v) for k, v in header.items()}, type=EVENT_OF_DATA[type(data)], data=data)


messages = st.one_of(
    st.builds(Hello, **header, backend=st.sampled_from(["simulated", "neonize"]), heartbeat_interval=seconds,
              version=text),
    st.builds(Heartbeat, **header, bot_status=st.sampled_from(list(BotStatus)),
              connection_attempts=st.integers(0, 1000), events_dropped=st.integers(0, 10**9)),
    events(),
    st.builds(Bye, **header, reason=text, exit_code=st.integers(0, 255)),
    st.builds(StateChange, **header, state=st.sampled_from(list(ContainerState)),
              previous=st.sampled_from(list(ContainerState)), reason=opt(text), next_restart_at=opt(seconds),
              last_exit=opt(text), restarts=st.integers(0, 10**6)),
    st.builds(Notice, **{**header, "bot": st.just(SUPERVISOR_BOT)}, level=st.sampled_from(["info", "error"]),
              message=text),
)

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


@given(messages)
def test_every_message_survives_a_round_trip_with_its_topic(message):
    topic, payload = encode(message)
    decoded = decode(payload)
    assert decoded == message
    check_topic(topic, decoded)
    assert topic.decode().startswith(f"{message.server}.{message.bot}.")


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=500)
@given(st.binary(max_size=300))
def test_garbage_bytes_raise_protocol_error_and_nothing_else(raw):
    try:
        decode(raw)
    except ProtocolError:
        pass


@settings(max_examples=500)
@given(plain)
def test_valid_msgpack_of_any_shape_raises_protocol_error_or_is_a_valid_message(obj):
    try:
        message = decode(msgpack.packb(obj, use_bin_type=True))
    except ProtocolError:
        return
    assert decode(encode(message)[1]) == message


@given(messages, st.data())
def test_a_message_missing_any_field_or_holding_a_wrong_type_is_refused(message, data):
    body = msgpack.unpackb(encode(message)[1])
    key = data.draw(st.sampled_from(sorted(k for k in body if k not in ("v",))))
    broken = dict(body)
    if data.draw(st.booleans()):
        del broken[key]
        import dataclasses

        required = {"kind", "data"} | {f.name for f in dataclasses.fields(type(message))
                                       if f.default is dataclasses.MISSING}
        if key not in required:
            return
    else:
        broken[key] = ["a list where no field takes one"]
    with pytest.raises(ProtocolError):
        decode(msgpack.packb(broken, use_bin_type=True))


@given(messages, st.data())
def test_unknown_keys_are_refused(message, data):
    body = msgpack.unpackb(encode(message)[1])
    body[data.draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in body))] = 1
    with pytest.raises(ProtocolError, match="unknown key"):
        decode(msgpack.packb(body, use_bin_type=True))


def sample() -> Heartbeat:
    return Heartbeat("srv", "b1", 42, 7, 1.5, BotStatus.ONLINE)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.update(v=3), "unsupported protocol version 3"),
        (lambda b: b.pop("v"), "unsupported protocol version None"),
        (lambda b: b.update(kind="shout"), "unknown message kind 'shout'"),
        (lambda b: b.update(bot="../x"), "bad bot id '../x'"),
        (lambda b: b.update(server="a.b"), "bad server name"),
        (lambda b: b.update(seq=-1), "must not be negative"),
        (lambda b: b.update(seq="7"), "seq: must be an integer"),
        (lambda b: b.update(bot_status="dancing"), "bot_status: must be one of"),
        (lambda b: b.pop("pid"), "pid: missing required key"),
    ],
)
def test_refusals_say_what_is_wrong(mutate, reason):
    body = msgpack.unpackb(encode(sample())[1])
    mutate(body)
    with pytest.raises(ProtocolError, match=reason.replace("(", r"\(")):
        decode(msgpack.packb(body))


def test_oversized_payloads_and_non_maps_are_refused():
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(b"\x80" + b" " * MAX_PAYLOAD_BYTES)
    with pytest.raises(ProtocolError, match="must be a msgpack map"):
        decode(msgpack.packb([1, 2, 3]))
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        decode(b"\xc1")
    with pytest.raises(ProtocolError):
        decode("text, not bytes")  # type: ignore[arg-type]


def test_an_event_whose_data_does_not_fit_its_type_is_refused():
    body = msgpack.unpackb(encode(Event("s", "b", 1, 0, 1.0, EventType.CONNECTION_UPDATE,
                                        ConnectionUpdate("open")))[1])
    body["type"] = "message-upsert"
    with pytest.raises(ProtocolError, match=r"bad event message: data\.connection: unknown key"):
        decode(msgpack.packb(body))


def test_a_topic_that_does_not_match_its_message_is_refused():
    topic, payload = encode(sample())
    check_topic(topic, decode(payload))
    with pytest.raises(ProtocolError, match="does not match"):
        check_topic(b"srv.b2.heartbeat", decode(payload))


def test_signatures_bind_topic_and_payload_to_one_secret():
    secret, other = new_secret(), new_secret()
    topic, payload = encode(sample())
    signature = sign(secret, topic, payload)
    assert verify(secret, topic, payload, signature)
    assert not verify(other, topic, payload, signature)
    assert not verify(secret, b"srv.b2.heartbeat", payload, signature)
    assert not verify(secret, topic, payload + b"x", signature)


@given(plain)
def test_control_requests_decode_or_raise_protocol_error(obj):
    try:
        decode_request(msgpack.packb(obj, use_bin_type=True))
    except ProtocolError:
        pass


def test_control_messages_round_trip():
    request = Request("id1", "status", {"bots": ["b1"]})
    assert decode_request(encode_request(request)) == request
    reply = ok("id1", {"n": 1})
    assert decode_reply(encode_reply(reply)) == reply
    assert PROTOCOL_VERSION == 2
