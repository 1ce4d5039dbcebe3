"""The neonize event mapping, on real neonize protobuf event objects (docs/neonize.md, the table)."""

from __future__ import annotations

import pytest
from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    ExtendedTextMessage,
    ImageMessage,
    Message,
)

from protocol import (
    ConnectionUpdate,
    CredsUpdate,
    ErrorEvent,
    MessageUpsert,
    PresenceUpdate,
)
from protocol.codec import decode, encode
from protocol.events import EVENT_OF_DATA
from protocol.messages import Event
from worker.backends.neonize_events import FATAL_CODES, RESTART_CODES, map_event

NOW = 1_800_000_000.0
R = pb.ConnectFailureReason


def jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> pb.JID:
    return pb.JID(User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=False)


def message_event(message: Message, *, group: bool = False, from_me: bool = False, media: str = "",
                  kind: str = "text") -> pb.Message:
    chat = jid("120363000000000001", "g.us") if group else jid("15550001111")
    source = pb.MessageSource(Chat=chat, Sender=jid("15550001111", device=7), IsFromMe=from_me, IsGroup=group)
    info = pb.MessageInfo(MessageSource=source, ID="3EB0ABCDEF", Type=kind, MediaType=media, Pushname="Ana",
                          Timestamp=1_764_100_000_123)
    return pb.Message(Info=info, Message=message)


def test_a_text_message_becomes_message_upsert_with_seconds_and_the_sender_without_device():
    data = map_event(message_event(Message(conversation="hello bot")), NOW)
    assert data == MessageUpsert(id="3EB0ABCDEF", chat="15550001111@s.whatsapp.net", sender="15550001111@s.whatsapp.net",
                                 timestamp=1_764_100_000.123, from_me=False, text="hello bot", message_type="text",
                                 push_name="Ana", is_group=False)


def test_extended_text_and_captions_are_text_and_media_has_its_type():
    extended = map_event(message_event(Message(extendedTextMessage=ExtendedTextMessage(text="see https://x.y"))), NOW)
    assert extended.text == "see https://x.y"
    image = map_event(message_event(Message(imageMessage=ImageMessage(caption="a cat")), group=True, from_me=True,
                                    media="image", kind="media"), NOW)
    assert (image.text, image.message_type, image.is_group, image.from_me) == ("a cat", "image", True, True)
    assert image.chat == "120363000000000001@g.us"
    bare = map_event(message_event(Message(imageMessage=ImageMessage(mimetype="image/jpeg")), media="image"), NOW)
    assert bare.text is None, "a message without text has no text key, not an empty string"


def test_connection_events_map_to_open_and_close_with_a_reason():
    assert map_event(pb.Connected(status=True), NOW) == ConnectionUpdate("open")
    assert map_event(pb.Disconnected(status=True), NOW) == ConnectionUpdate("close", reason="disconnected")
    assert map_event(pb.KeepAliveTimeout(ErrorCount=3, LastSuccess=5), NOW) == ConnectionUpdate(
        "close", reason="keepalive timeout (3 missed)")
    assert map_event(pb.KeepAliveRestored(), NOW) == ConnectionUpdate("open", reason="keepalive restored")
    assert map_event(pb.StreamError(Code="515"), NOW) == ConnectionUpdate("close", reason="stream error 515")



@pytest.mark.parametrize("reason, status", [(R.GENERIC, 400), (R.EXPERIMENTAL, 501)])
def test_a_connect_failure_restarts_the_worker_because_whatsmeow_does_not_reconnect(reason, status):
    # connectionevents.go handleConnectFailure: these take the default branch (expectDisconnect)
    data = map_event(pb.ConnectFailure(Reason=reason, Message="try later"), NOW)
    assert (data.code, data.fatal, data.status) == ("connect-failure", False, status)
    assert "try later" in data.message and "does not reconnect" in data.message
    assert data.code in RESTART_CODES


def test_a_rejected_user_agent_is_fatal():
    data = map_event(pb.ConnectFailure(Reason=R.BAD_USER_AGENT), NOW)
    assert (data.code, data.fatal, data.status) == ("client-rejected", True, 409)


@pytest.mark.parametrize("reason, status", [(R.LOGGED_OUT, 401), (R.MAIN_DEVICE_GONE, 403), (R.UNKNOWN_LOGOUT, 406)])
def test_logged_out_is_fatal_with_its_status(reason, status):
    data = map_event(pb.LoggedOut(OnConnect=True, Reason=reason), NOW)
    assert isinstance(data, ErrorEvent) and data.fatal and data.code == "logged-out" and data.status == status
    assert "pair the bot again" in data.message


def test_temporary_ban_is_fatal_and_carries_its_expiry_as_a_date():
    data = map_event(pb.TemporaryBan(Code=pb.TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=7200), NOW)
    assert data == ErrorEvent(code="temporary-ban", fatal=True, status=402, expires_at=NOW + 7200,
                              message=data.message)
    assert "101" in data.message and "7200 s" in data.message


def test_client_outdated_and_stream_replaced_are_fatal():
    outdated = map_event(pb.ClientOutdated(), NOW)
    assert (outdated.code, outdated.fatal, outdated.status) == ("client-outdated", True, 405)
    replaced = map_event(pb.StreamReplaced(), NOW)
    assert (replaced.code, replaced.fatal) == ("stream-replaced", True)
    assert {outdated.code, replaced.code, "logged-out", "temporary-ban", "client-rejected",
            "unknown-failure"} == FATAL_CODES


def test_presence_and_chat_presence_become_presence_updates():
    seen = map_event(pb.Presence(From=jid("15550002222", device=3), Unavailable=True, LastSeen=1_764_000_000), NOW)
    assert seen == PresenceUpdate(jid="15550002222@s.whatsapp.net", presence="unavailable", last_seen=1_764_000_000.0)
    assert map_event(pb.Presence(From=jid("1555"), Unavailable=False), NOW).last_seen is None
    source = pb.MessageSource(Chat=jid("120363000000000001", "g.us"), Sender=jid("15550002222", device=2))
    typing = map_event(pb.ChatPresence(MessageSource=source, State=pb.ChatPresence.COMPOSING,
                                       Media=pb.ChatPresence.TEXT), NOW)
    assert typing == PresenceUpdate(jid="15550002222@s.whatsapp.net", chat="120363000000000001@g.us",
                                    presence="composing")
    recording = map_event(pb.ChatPresence(MessageSource=source, State=pb.ChatPresence.COMPOSING,
                                          Media=pb.ChatPresence.AUDIO), NOW)
    assert recording.presence == "recording"
    assert map_event(pb.ChatPresence(MessageSource=source, State=pb.ChatPresence.PAUSED), NOW).presence == "paused"


def test_pair_status_success_is_a_verified_creds_update_and_failure_an_error():
    paired = map_event(pb.PairStatus(ID=jid("15550003333"), Status=pb.PairStatus.SUCCESS), NOW)
    assert paired == CredsUpdate(verified=True, phone_number="15550003333", last_updated=NOW, reason="paired")
    failed = map_event(pb.PairStatus(Status=pb.PairStatus.ERROR, Error="bad code"), NOW)
    assert isinstance(failed, ErrorEvent) and not failed.fatal and "bad code" in failed.message


def test_events_a_bot_does_not_publish_map_to_none():
    assert map_event(pb.Receipt(MessageIDs=["A"], Type=pb.Receipt.PEER_MSG), NOW) is None
    assert map_event(pb.Picture(), NOW) is None


def test_every_mapped_event_survives_the_wire_codec():
    events = [pb.Connected(), pb.Disconnected(), pb.LoggedOut(Reason=R.LOGGED_OUT),
              pb.TemporaryBan(Code=pb.TemporaryBan.BROADCAST_LIST, Expire=60), pb.StreamReplaced(),
              message_event(Message(conversation="hi")), pb.Presence(From=jid("1555")),
              pb.PairStatus(ID=jid("1555"), Status=pb.PairStatus.SUCCESS)]
    for i, ev in enumerate(events):
        data = map_event(ev, NOW)
        message = Event("s", "b", 1, i, NOW, EVENT_OF_DATA[type(data)], data)
        assert decode(encode(message)[1]).data == data
