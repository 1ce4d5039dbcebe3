"""The neonize backend's operations on a real client (run through tests/neonize_scenarios.py,
one scenario per fresh interpreter): tests/contract.py against it, what the operations build
with only the network edge replaced, and the slow network calls kept off the worker's loop.
"""

from __future__ import annotations

import select
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from protocol.config import WhatsAppSettings
from tests.neonize_driver import go_event, jid, online_backend, pump, settled, shape


def scenario_contract() -> dict:
    """tests/contract.py against the neonize backend (a session whatsmeow says is connected)."""
    from neonize.proto import Neonize_pb2 as pb
    from neonize.proto.waCommon.WACommon_pb2 import MessageKey
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
        ContextInfo,
        ExtendedTextMessage,
        Message,
        ProtocolMessage,
        ReactionMessage,
    )

    from protocol import BotStatus
    from tests.contract import run_contract

    backend, emitted, proxy = online_backend(whatsapp=WhatsAppSettings(media_max_mb=1))
    counter = [0]

    def receive(kind: str, group: bool) -> Any:
        counter[0] += 1
        chat = jid("120363000000000001", "g.us") if group else jid("15550001111")
        source = pb.MessageSource(Chat=chat, Sender=jid("15550001111"), IsFromMe=False, IsGroup=group)
        info = pb.MessageInfo(MessageSource=source, ID=f"3EB0C{counter[0]}", Type="text", Timestamp=1_764_100_000_000)
        first = "3EB0C1"
        message = {
            "text": Message(conversation="ping"),
            "reply": Message(extendedTextMessage=ExtendedTextMessage(text="pong?", contextInfo=ContextInfo(
                stanzaID=first, participant="15550001111@s.whatsapp.net", quotedMessage=Message(conversation="ping")))),
            "reaction": Message(reactionMessage=ReactionMessage(key=MessageKey(ID=first), text="👍")),
            "revoke": Message(protocolMessage=ProtocolMessage(type=ProtocolMessage.REVOKE, key=MessageKey(ID=first))),
            "edit": Message(protocolMessage=ProtocolMessage(type=ProtocolMessage.MESSAGE_EDIT, key=MessageKey(ID=first),
                                                            editedMessage=Message(conversation="ping!"))),
        }[kind]
        before = len(emitted)
        go_event(backend.client, pb.Message(Info=info, Message=message))
        pump(backend, lambda: len(emitted) > before)
        return emitted[-1]

    def set_online(online: bool) -> None:
        backend.status = BotStatus.ONLINE if online else BotStatus.LOADING

    result = run_contract(backend, receive, set_online)
    backend.stop()
    proxy.close()
    return result


def scenario_operations() -> dict:
    """The operations on a real neonize client, with only the network edge replaced: upload and
    SendMessage record what the backend built (protobufs), everything else is neonize's own
    (BuildReaction runs in Go, build_edit / build_revoke in neonize's builder). Then the real
    calls offline, to see whatsmeow's refusal reach the operator as that operation's error."""
    from google.protobuf.json_format import MessageToDict
    from neonize.proto import Neonize_pb2 as pb
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ImageMessage, Message

    from worker.commands import OPERATIONS

    backend, emitted, proxy = online_backend()
    client = backend.client

    client.me = pb.Device(JID=jid("15559990000"))
    alice = jid("15550001111")
    source = pb.MessageSource(Chat=alice, Sender=alice, IsFromMe=False, IsGroup=False)
    image = ImageMessage(mimetype="image/png", directPath="/v/x", mediaKey=b"k" * 32, fileLength=10)
    for i, message in enumerate((Message(conversation="ping"), Message(imageMessage=image))):
        info = pb.MessageInfo(MessageSource=source, ID=f"3EB0IN{i}", Type="text", Timestamp=1_764_100_000_000)
        go_event(client, pb.Message(Info=info, Message=message))
    pump(backend, lambda: len(backend.recent) >= 2)
    # Offline for real: the dial into the silent proxy holds whatsmeow's socket lock until its
    # handshake times out, and a call made meanwhile waited for it (once for neonize's 60 s). With
    # the proxy gone the handshake fails at once (is_connected takes the same lock: past it, no
    # dial holds it) and every later dial is refused at once: each call meets a client not connected.
    proxy.close()
    assert not client.is_connected
    offline: dict[str, str] = {}
    for name, args in (("check_numbers", {"numbers": ["15550001111"]}), ("group_info", {"group": "1203@g.us"}),
                       ("user_info", {"jids": ["15550001111"]}), ("subscribe_presence", {"jid": "15550001111"}),
                       ("reject_call", {"call_id": "C1", "caller": "15550001111"}),
                       ("download", {"message_id": "3EB0IN1"}), ("send", {"to": "15550001111", "text": "x"})):
        try:
            settled(backend, OPERATIONS[name](backend, args))
            offline[name] = "ok"
        except Exception as exc:
            offline[name] = f"{type(exc).__name__}: {exc}"

    sent: list[Any] = []

    class Response:
        def __init__(self, message: Any) -> None:
            self.ID, self.Message = f"3EB0OUT{len(sent)}", message

    def send_message(to: Any, message: Any, *a: Any, **k: Any) -> Response:
        built = message if not isinstance(message, str) else Message(conversation=message)
        sent.append({"to": f"{to.User}@{to.Server}", "message": MessageToDict(built)})
        return Response(built)

    def upload(data: bytes, media_type: Any = None) -> Any:
        return pb.UploadResponse(url="https://mmg/x", DirectPath="/v/up", MediaKey=b"m" * 32,
                                 FileEncSHA256=b"e" * 32, FileSHA256=b"s" * 32, FileLength=len(data))

    client.send_message, client.upload = send_message, upload
    photo = Path(tempfile.mkdtemp()) / "cat.png"
    photo.write_bytes(b"\x89PNG" + b"\0" * 10)
    replies = {}
    for name, args in (
            ("send", {"to": "15550001111", "text": "pong", "quote": "3EB0IN0", "mentions": ["15550002222"]}),
            ("send_media", {"to": "15550001111", "kind": "image", "path": str(photo), "caption": "cat",
                            "quote": "3EB0IN0"}),
            ("send_media", {"to": "15550001111", "kind": "voice", "path": str(photo)}),
            ("send_media", {"to": "15550001111", "kind": "document", "path": str(photo), "file_name": "c.png"}),
            ("react", {"chat": "15550001111", "message_id": "3EB0IN0", "emoji": "👍"}),
            ("edit", {"chat": "15550001111", "message_id": "3EB0OUT1", "text": "pong!"}),
            ("revoke", {"chat": "15550001111", "message_id": "3EB0OUT1"})):
        try:
            replies[f"{name}{len(replies)}"] = settled(backend, OPERATIONS[name](backend, args))
        except Exception as exc:
            replies[f"{name}{len(replies)}"] = {"error": f"{type(exc).__name__}: {exc}"}
    echoes = [shape(e) for e in emitted if getattr(e, "from_me", False)]
    backend.stop()
    proxy.close()
    return {"offline": offline, "sent": sent, "replies": replies, "echoes": echoes}


def scenario_offloop() -> dict:
    """A slow upload and SendMessage (stand-ins for the network edge of a real client) run on the
    worker's I/O thread, not the loop's: while they take their time the loop's thread keeps
    coming round (each turn timed), and the result reaches the reply and the echo."""
    from neonize.proto import Neonize_pb2 as pb
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    from worker.commands import OPERATIONS
    from worker.offload import Pending

    backend, emitted, proxy = online_backend()
    client = backend.client
    client.me = pb.Device(JID=pb.JID(User="15559990000", Server="s.whatsapp.net"))
    loop_thread = threading.current_thread().name
    calls: list[dict] = []
    delay = 1.5

    class Response:
        def __init__(self, message: Any) -> None:
            self.ID, self.Message = f"3EB0SLOW{len(calls)}", message

    def send_message(to: Any, message: Any, *a: Any, **k: Any) -> Response:
        time.sleep(delay)
        calls.append({"call": "send_message", "thread": threading.current_thread().name})
        return Response(message if not isinstance(message, str) else Message(conversation=message))

    def upload(data: bytes, media_type: Any = None) -> Any:
        time.sleep(delay)
        calls.append({"call": "upload", "thread": threading.current_thread().name})
        return pb.UploadResponse(url="https://mmg/x", DirectPath="/v/up", MediaKey=b"m" * 32,
                                 FileEncSHA256=b"e" * 32, FileSHA256=b"s" * 32, FileLength=len(data))

    def is_on_whatsapp(*numbers: str) -> list:
        time.sleep(delay)
        calls.append({"call": "is_on_whatsapp", "thread": threading.current_thread().name})
        return [pb.IsOnWhatsAppResponse(Query=n, JID=pb.JID(User=n.lstrip("+"), Server="s.whatsapp.net"), IsIn=True)
                for n in numbers]

    client.send_message, client.upload, client.is_on_whatsapp = send_message, upload, is_on_whatsapp
    photo = Path(tempfile.mkdtemp()) / "cat.png"
    photo.write_bytes(b"\x89PNG" + b"\0" * 10)
    results: dict[str, Any] = {}
    for name, args in (("send", {"to": "15550001111", "text": "slow"}),
                       ("send_media", {"to": "15550001111", "kind": "image", "path": str(photo)}),
                       ("check_numbers", {"numbers": ["15550001111"]})):
        began = time.monotonic()
        result = OPERATIONS[name](backend, args)
        returned_in = time.monotonic() - began
        turns, longest = 0, 0.0
        while isinstance(result, Pending) and not result.done():  # the loop's turns meanwhile
            turn = time.monotonic()
            select.select([backend.io.fd], [], [], 0.05)
            backend.io.drain()
            longest = max(longest, time.monotonic() - turn)
            turns += 1
            if time.monotonic() - began > 30:
                raise AssertionError(f"{name} never finished")
        value = result.result() if isinstance(result, Pending) else result
        results[name] = {"pending": isinstance(result, Pending), "returned_in": returned_in, "turns": turns,
                         "longest_turn": longest, "took": time.monotonic() - began, "value": value}
    echoes = [e.id for e in emitted if getattr(e, "from_me", False)]
    backend.stop()
    proxy.close()
    return {"loop_thread": loop_thread, "calls": calls, "results": results, "echoes": echoes, "delay": delay}
