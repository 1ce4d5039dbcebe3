"""The message model on real neonize protobufs, shaped as whatsmeow hands them over (already
unwrapped: types/events/events.go UnwrapRaw): replies, media, mentions, link previews, LID
senders, reactions, edits, revokes, noise; receipts, calls, group changes, history sync."""

from __future__ import annotations

import pytest
from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    ExtendedTextMessage,
    ImageMessage,
    Message,
    ProtocolMessage,
    ReactionMessage,
    SenderKeyDistributionMessage,
)
from neonize.proto.waHistorySync.WAWebProtobufsHistorySync_pb2 import Conversation
from neonize.proto.waHistorySync.WAWebProtobufsHistorySync_pb2 import HistorySync as HistorySyncData
from neonize.proto.waHistorySync.WAWebProtobufsHistorySync_pb2 import HistorySyncMsg

from protocol import (
    CallUpdate,
    GroupUpdate,
    HistorySync,
    LinkPreview,
    Media,
    Quoted,
    ReceiptUpdate,
)
from protocol.codec import decode, encode
from protocol.events import EVENT_OF_DATA
from protocol.messages import Event
from worker.backends.neonize_events import map_event, map_events

from .test_neonize_events import NOW, jid, message_event


def test_a_reply_carries_the_quoted_id_sender_and_text():
    context = ContextInfo(stanzaID="3EB0QUOTED", participant="15550002222@s.whatsapp.net",
                          quotedMessage=Message(conversation="the original"))
    data = map_event(message_event(Message(extendedTextMessage=ExtendedTextMessage(text="my answer",
                                                                                    contextInfo=context))), NOW)
    assert (data.kind, data.text) == ("message", "my answer")
    assert data.quoted == Quoted(id="3EB0QUOTED", sender="15550002222@s.whatsapp.net", text="the original",
                                 message_type="text")


def test_media_carries_what_a_download_needs():
    image = ImageMessage(caption="a cat", mimetype="image/jpeg", fileLength=12345, fileSHA256=b"\x01\x02",
                         fileEncSHA256=b"enc", mediaKey=b"key", directPath="/v/t62/abc", width=640, height=480)
    data = map_event(message_event(Message(imageMessage=image), media="image", kind="media"), NOW)
    assert data.media == Media(kind="image", mimetype="image/jpeg", size=12345, sha256="0102", width=640, height=480,
                               direct_path="/v/t62/abc", media_key="a2V5", enc_sha256="ZW5j")
    assert (data.text, data.message_type) == ("a cat", "image")
    voice = map_event(message_event(Message(audioMessage=AudioMessage(PTT=True, seconds=7, mimetype="audio/ogg"))),
                      NOW)
    assert (voice.media.kind, voice.media.duration, voice.message_type) == ("voice", 7, "voice")
    doc = map_event(message_event(Message(documentMessage=DocumentMessage(fileName="report.pdf",
                                                                          mimetype="application/pdf"))), NOW)
    assert (doc.media.kind, doc.media.file_name) == ("document", "report.pdf")


def test_mentions_link_previews_and_the_phone_number_of_a_lid_sender():
    ext = ExtendedTextMessage(text="hi @15550002222 see https://example.org", matchedText="https://example.org",
                              title="Example", description="An example",
                              contextInfo=ContextInfo(mentionedJID=["15550002222@s.whatsapp.net"]))
    ev = message_event(Message(extendedTextMessage=ext), group=True)
    ev.Info.MessageSource.Sender.CopyFrom(jid("123456789012345", "lid", device=3))
    ev.Info.MessageSource.SenderAlt.CopyFrom(jid("15550001111", device=3))
    data = map_event(ev, NOW)
    assert data.mentions == ["15550002222@s.whatsapp.net"]
    assert data.link_preview == LinkPreview(url="https://example.org", title="Example", description="An example")
    assert (data.sender, data.sender_alt) == ("123456789012345@lid", "15550001111@s.whatsapp.net")
    plain = map_event(message_event(Message(conversation="no alt")), NOW)
    assert plain.sender_alt is None and plain.mentions is None and plain.link_preview is None


def test_reactions_edits_and_revokes_are_kinds_acting_on_their_target():
    reaction = map_event(message_event(Message(reactionMessage=ReactionMessage(key=MessageKey(ID="3EB0T"), text="👍"))),
                         NOW)
    assert (reaction.kind, reaction.target_id, reaction.emoji, reaction.text) == ("reaction", "3EB0T", "👍", None)
    removed = map_event(message_event(Message(reactionMessage=ReactionMessage(key=MessageKey(ID="3EB0T"), text=""))),
                        NOW)
    assert (removed.kind, removed.emoji) == ("reaction", "")
    edit = ProtocolMessage(type=ProtocolMessage.MESSAGE_EDIT, key=MessageKey(ID="3EB0T"),
                           editedMessage=Message(conversation="fixed typo"))
    edited = map_event(message_event(Message(protocolMessage=edit)), NOW)
    assert (edited.kind, edited.target_id, edited.text) == ("edit", "3EB0T", "fixed typo")
    revoke = ProtocolMessage(type=ProtocolMessage.REVOKE, key=MessageKey(ID="3EB0T"))
    revoked = map_event(message_event(Message(protocolMessage=revoke)), NOW)
    assert (revoked.kind, revoked.target_id, revoked.text) == ("revoke", "3EB0T", None)


@pytest.mark.parametrize("noise", [
    Message(protocolMessage=ProtocolMessage(type=ProtocolMessage.HISTORY_SYNC_NOTIFICATION)),
    Message(protocolMessage=ProtocolMessage(type=ProtocolMessage.APP_STATE_SYNC_KEY_SHARE)),
    Message(senderKeyDistributionMessage=SenderKeyDistributionMessage(groupID="g")),
    Message(),
], ids=["history-sync-notice", "app-state-keys", "sender-key-only", "empty"])
def test_protocol_and_system_messages_are_not_published(noise):
    assert map_events(message_event(noise, from_me=True), NOW) == []


def test_receipts_become_receipt_updates_with_seconds():
    source = pb.MessageSource(Chat=jid("120363000000000001", "g.us"), Sender=jid("15550002222", device=4),
                              IsGroup=True)
    data = map_event(pb.Receipt(MessageSource=source, MessageIDs=["A", "B"], Timestamp=1_764_100_000,
                                Type=pb.Receipt.READ), NOW)
    assert data == ReceiptUpdate(chat="120363000000000001@g.us", sender="15550002222@s.whatsapp.net",
                                 message_ids=["A", "B"], type="read", timestamp=1_764_100_000.0, is_group=True)
    delivered = map_event(pb.Receipt(MessageSource=source, MessageIDs=["A"], Type=pb.Receipt.DELIVERED), NOW)
    assert (delivered.type, delivered.timestamp) == ("delivered", NOW)
    assert map_event(pb.Receipt(MessageSource=source, MessageIDs=["A"], Type=pb.Receipt.PLAYED), NOW).type == "played"


def test_calls_carry_the_caller_and_the_call_id():
    meta = pb.BasicCallMeta(callCreator=jid("15550002222", device=1), callID="CALL1", timestamp=1_764_100_000)
    offer = map_event(pb.CallOffer(basicCallMeta=meta, data=pb.Node(Tag="offer", Nodes=[pb.Node(Tag="video")])),
                      NOW)
    assert offer == CallUpdate(call_id="CALL1", caller="15550002222@s.whatsapp.net", state="offer",
                               timestamp=1_764_100_000.0, is_video=True, is_group=False)
    ended = map_event(pb.CallTerminate(basicCallMeta=meta, reason="timeout"), NOW)
    assert (ended.state, ended.reason, ended.call_id) == ("terminate", "timeout", "CALL1")
    assert map_event(pb.CallAccept(basicCallMeta=meta), NOW).state == "accept"


def test_group_changes_become_one_group_update_per_change():
    ev = pb.GroupInfoEvent(JID=jid("120363000000000001", "g.us"), Sender=jid("15550009999"), Timestamp=1_764_100_000,
                           Join=[jid("15550001111"), jid("15550002222")], Demote=[jid("15550003333")],
                           Name=pb.GroupName(Name="New name"))
    changes = map_events(ev, NOW)
    assert [c.action for c in changes] == ["join", "demote", "subject"]
    assert changes[0] == GroupUpdate(group="120363000000000001@g.us", action="join", timestamp=1_764_100_000.0,
                                     actor="15550009999@s.whatsapp.net",
                                     participants=["15550001111@s.whatsapp.net", "15550002222@s.whatsapp.net"])
    assert changes[2].subject == "New name"
    joined = map_event(pb.JoinedGroup(GroupInfo=pb.GroupInfo(JID=jid("120363000000000002", "g.us"),
                                                             GroupName=pb.GroupName(Name="Shop"))), NOW)
    assert (joined.action, joined.group, joined.subject) == ("join", "120363000000000002@g.us", "Shop")


def test_history_sync_is_a_summary():
    data = HistorySyncData(syncType=HistorySyncData.RECENT, progress=40, conversations=[
        Conversation(ID="a@s.whatsapp.net", messages=[HistorySyncMsg(), HistorySyncMsg()]),
        Conversation(ID="b@s.whatsapp.net", messages=[HistorySyncMsg()])])
    assert map_event(pb.HistorySync(Data=data), NOW) == HistorySync(sync_type="RECENT", conversations=2, messages=3,
                                                                    progress=40)


def test_hidden_last_seen_is_no_date_and_a_ban_without_expiry_has_none():
    go_zero_time = -62135596800  # time.Time{}.Unix(), what neonize's encoder hands over
    assert map_event(pb.Presence(From=jid("1555"), Unavailable=True, LastSeen=go_zero_time), NOW).last_seen is None
    ban = map_event(pb.TemporaryBan(Code=pb.TemporaryBan.BLOCKED_BY_USERS, Expire=0), NOW)
    assert ban.expires_at is None and ban.fatal and "no expiry" in ban.message


def test_every_new_shape_survives_the_wire_codec():
    image = ImageMessage(caption="c", mimetype="image/png", directPath="/x", mediaKey=b"k",
                         contextInfo=ContextInfo(stanzaID="Q", quotedMessage=Message(conversation="q"),
                                                 mentionedJID=["1@s.whatsapp.net"]))
    source = pb.MessageSource(Chat=jid("1555"), Sender=jid("1555"))
    events = [message_event(Message(imageMessage=image), media="image"),
              message_event(Message(reactionMessage=ReactionMessage(key=MessageKey(ID="T"), text="x"))),
              pb.Receipt(MessageSource=source, MessageIDs=["A"], Type=pb.Receipt.READ),
              pb.CallOffer(basicCallMeta=pb.BasicCallMeta(callCreator=jid("1555"), callID="C")),
              pb.GroupInfoEvent(JID=jid("1", "g.us"), Leave=[jid("1555")]),
              pb.HistorySync(Data=HistorySyncData(syncType=HistorySyncData.FULL))]
    for i, ev in enumerate(events):
        data = map_event(ev, NOW)
        message = Event("s", "b", 1, i, NOW, EVENT_OF_DATA[type(data)], data)
        assert decode(encode(message)[1]).data == data
