"""The neonize backend through neonize's own dispatch, one scenario per fresh interpreter
(tests/test_neonize_dispatch.py runs them; bus_scenarios.py says why a fresh one).

Events enter where Go hands them to Python: ``client.event.execute(uuid, address, size, code)``
with a real serialised protobuf, the QR through ``NewClient.__onQr`` and the login status
through the ctypes callback ``connect()`` builds. So the test fails when the backend subscribes
to nothing (execute then finds no handler, and connect() would pass Go an empty list), when the
QR hook is gone (neonize then prints the code to fd 1), or when a connect failure is handled as
anything but what whatsmeow does. Prints one JSON object; ends with os._exit (neonize keeps a
non-daemon thread).
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import select
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from protocol.backoff import RestartPolicy
from protocol.config import BotConfig, WhatsAppSettings
from protocol.schema import to_mapping
from worker.backends.base import BackendContext


def make_backend(proxy_port: int, bot_dir: Path | None = None, **bot: Any) -> tuple[Any, list]:
    from worker.backends.neonize import NeonizeBackend

    if bot_dir is None:
        bot_dir = Path(tempfile.mkdtemp(prefix="neonize-scenario-")) / "bot_n1"
        bot_dir.mkdir(mode=0o700)
    emitted: list = []
    config = BotConfig(id="n1", backend="neonize", proxy=f"http://127.0.0.1:{proxy_port}",
                       backoff=RestartPolicy(initial=0.5, factor=2.0, max=10.0, jitter=0.0), **bot)
    ctx = BackendContext(bot=config, bot_dir=bot_dir, emit=emitted.append, log=logging.getLogger("scenario"))
    return NeonizeBackend(ctx), emitted


def pump(backend: Any, until: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the backend did not get there in time")
        select.select([backend.wakeup_fd()], [], [], min(left, 0.05))
        backend.poll(time.monotonic())


def go_event(client: Any, message: Any) -> None:
    """Hand ``message`` to Python as neonize's Go event loop does (CallbackFunction)."""
    from neonize.events import EVENT_TO_INT

    raw = message.SerializePartialToString()  # Go sets every required field; the parser takes either
    buffer = ctypes.create_string_buffer(raw, len(raw))
    client.event.execute(0, ctypes.addressof(buffer), len(raw), EVENT_TO_INT[type(message)])


def go_string_callback(fn: Any, text: bytes) -> None:
    """Call ``fn`` the way Go calls the QR and login-status callbacks: func_string(uuid, text)."""
    from neonize._binder import func_string

    uuid, value = ctypes.create_string_buffer(b"n1"), ctypes.create_string_buffer(text)
    func_string(fn)(ctypes.addressof(uuid), ctypes.addressof(value))


def silent_proxy() -> Any:
    from tests.test_neonize_worker import SilentProxy

    return SilentProxy()


def refused_port() -> int:
    from tests.test_neonize_worker import refused_port as port

    return port()


def shape(data: Any) -> dict:
    return {"event": type(data).__name__, **to_mapping(data)}


# -- scenarios ------------------------------------------------------------------------------------
def scenario_dispatch() -> dict:
    """Every mapped event type, through Event.execute; and the subscription list connect() sends."""
    from neonize.events import EVENT_TO_INT
    from neonize.proto import Neonize_pb2 as pb
    from neonize.proto.waCommon.WACommon_pb2 import MessageKey
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message, ReactionMessage

    from worker.backends.neonize_events import EVENT_TYPES

    proxy = silent_proxy()
    backend, emitted = make_backend(proxy.port)
    backend.start(time.monotonic())
    client = backend.client
    subscribed = sorted(bytearray(list(client.event.list_func)))  # exactly what connect() passes to Go

    def jid(user: str, server: str = "s.whatsapp.net") -> Any:
        return pb.JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)

    chat = jid("15550001111")
    source = pb.MessageSource(Chat=chat, Sender=jid("15550001111"), IsFromMe=False, IsGroup=False)
    info = pb.MessageInfo(MessageSource=source, ID="3EB0GO", Type="text", Pushname="Ana", Timestamp=1_764_100_000_000)
    reply = ExtendedTextMessage(text="pong?", contextInfo=ContextInfo(stanzaID="3EB0Q", participant="1@s.whatsapp.net"))
    samples = [
        pb.Connected(status=True),
        pb.Message(Info=info, Message=Message(extendedTextMessage=reply)),
        pb.Message(Info=info, Message=Message(reactionMessage=ReactionMessage(key=MessageKey(ID="3EB0GO"), text="x"))),
        pb.Receipt(MessageSource=source, MessageIDs=["3EB0GO"], Timestamp=1_764_100_000, Type=pb.Receipt.READ),
        pb.Presence(From=chat, Unavailable=True, LastSeen=-62135596800),
        pb.ChatPresence(MessageSource=source, State=pb.ChatPresence.COMPOSING, Media=pb.ChatPresence.TEXT),
        pb.CallOffer(basicCallMeta=pb.BasicCallMeta(callCreator=chat, callID="CALL1", timestamp=1_764_100_000)),
        pb.CallTerminate(basicCallMeta=pb.BasicCallMeta(callCreator=chat, callID="CALL1"), reason="done"),
        pb.GroupInfoEvent(JID=jid("120363000000000001", "g.us"), Join=[chat], Timestamp=1_764_100_000),
        pb.JoinedGroup(GroupInfo=pb.GroupInfo(JID=jid("120363000000000002", "g.us"))),
        pb.HistorySync(),
        pb.KeepAliveTimeout(ErrorCount=1),
        pb.KeepAliveRestored(),
    ]
    results = []
    for sample in samples:
        before = len(emitted)
        go_event(client, sample)
        try:
            pump(backend, lambda before=before: len(emitted) > before, timeout=3)
        except AssertionError:
            pass
        results.append({"sent": type(sample).__name__, "got": [shape(e) for e in emitted[before:]]})
    backend.stop()
    proxy.close()
    return {"subscribed": subscribed, "expected": sorted(EVENT_TO_INT[t] for t in EVENT_TYPES), "results": results}


def scenario_qr() -> dict:
    """A QR code through neonize's own QR callback: published and written, nothing on fd 1."""
    proxy = silent_proxy()
    backend, emitted = make_backend(proxy.port)
    backend.start(time.monotonic())
    capture = tempfile.TemporaryFile()
    saved = os.dup(1)
    os.dup2(capture.fileno(), 1)
    try:
        go_string_callback(backend.client._NewClient__onQr, b"2@ref,noise,ident,adv")
        pump(backend, lambda: any(getattr(e, "qr", None) for e in emitted), timeout=3)
    except AssertionError:
        pass
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
    capture.seek(0)
    printed = capture.read().decode(errors="replace")
    qr = [e.qr for e in emitted if getattr(e, "qr", None)]
    png = (backend.ctx.bot_dir / "qr.png").exists()
    backend.stop()
    proxy.close()
    return {"qr": qr, "png": png, "fd1": printed}


def _end_of(backend: Any, emitted: list, trigger: Callable[[], None]) -> dict:
    trigger()
    try:
        pump(backend, lambda: False, timeout=5)
    except AssertionError:
        return {"ended": None, "last": [shape(e) for e in emitted[-3:]]}
    except Exception as exc:
        return {"ended": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc),
                "exit_code": getattr(exc, "exit_code", None), "last": [shape(e) for e in emitted[-3:]]}
    return {"ended": "returned"}


def scenario_connect_failure() -> dict:
    """ConnectFailure 400 and 409 through Event.execute while connect() runs (whatsmeow does not
    reconnect after either); and a dial that ends with neonize's "required field not set"."""
    from neonize.proto import Neonize_pb2 as pb

    out: dict[str, Any] = {}
    for name, reason in (("generic", pb.ConnectFailureReason.GENERIC),
                         ("bad_user_agent", pb.ConnectFailureReason.BAD_USER_AGENT)):
        proxy = silent_proxy()
        backend, emitted = make_backend(proxy.port)
        backend.start(time.monotonic())
        assert proxy.accepted.wait(10)
        out[name] = _end_of(backend, emitted, lambda b=backend, r=reason: go_event(
            b.client, pb.ConnectFailure(Reason=r, Message="refused", Raw=pb.Node(Tag="failure"))))
        backend.stop()
        proxy.close()
    # what connect() raises when Go's encoder left the ban code unset (an unlisted code)
    backend, emitted = make_backend(refused_port())
    backend.start(time.monotonic())
    pump(backend, lambda: any(getattr(e, "connection", "") == "close" for e in emitted))
    from worker.backends.neonize import _DialEnded

    out["unencodable_ban"] = _end_of(backend, emitted, lambda: backend._push(_DialEnded(
        "proto: required field neonize.TemporaryBan.Code not set")))
    backend.stop()
    return out


def scenario_pairing_timeout() -> dict:
    """QR codes, then whatsmeow's "timeout" login status, through the callback connect() builds:
    each life ends, the last one (pairing_lives) as fatal."""
    lives = []
    bot_dir = Path(tempfile.mkdtemp(prefix="neonize-pairing-")) / "bot_n1"
    bot_dir.mkdir(mode=0o700)  # one directory for all three lives, as a restarted worker has
    for _ in range(3):
        proxy = silent_proxy()
        backend, emitted = make_backend(proxy.port, bot_dir, whatsapp=WhatsAppSettings(pairing_lives=3))
        backend.start(time.monotonic())
        go_string_callback(backend.client._NewClient__onQr, b"2@qr,one")
        pump(backend, lambda: any(getattr(e, "qr", None) for e in emitted))

        def timeout(b: Any = backend) -> None:
            # connect() hands Go func_string(self.__onLoginStatus): the same callback, built the same way
            go_string_callback(b.client._NewClient__onLoginStatus, b"timeout")

        result = _end_of(backend, emitted, timeout)
        result["qr_png_left"] = (backend.ctx.bot_dir / "qr.png").exists()
        lives.append(result)
        backend.stop()
        proxy.close()
    return {"lives": lives}


def scenario_gc() -> dict:
    """An owned client is never stopped by a collection; an unowned one is, on the collecting thread."""
    import neonize.client as neonize_client
    from neonize.client import NewClient

    from worker.backends.neonize_lifetime import own, release

    calls: list[str] = []
    lib = neonize_client.gocode
    real_stop = lib.Stop

    def recording_stop(uuid: bytes) -> bytes:
        calls.append(threading.current_thread().name)
        return b""

    lib.Stop = recording_stop
    try:
        root = Path(tempfile.mkdtemp(prefix="neonize-gc-"))
        unowned = NewClient(str(root / "a.sqlite3"), uuid="gc-a")
        del unowned
        gc.collect()
        after_unowned = list(calls)
        calls.clear()
        owned = own(NewClient(str(root / "b.sqlite3"), uuid="gc-b"))
        finalizer_alive = owned._stop_finalizer.alive
        del owned
        gc.collect()
        after_owned = list(calls)
        from worker.backends.neonize_lifetime import _OWNED

        thread = release(_OWNED[-1])
        thread.join(5)
        after_release = list(calls)
    finally:
        lib.Stop = real_stop
    return {"unowned": after_unowned, "owned": after_owned, "finalizer_alive": finalizer_alive,
            "released": after_release, "main": threading.main_thread().name}


def scenario_fds() -> dict:
    """File descriptors after each failed dial (neonize opens the store on every connect())."""
    import worker.backends.neonize as neonize_backend

    neonize_backend.MAX_FAILED_DIALS = 7
    backend, emitted = make_backend(refused_port(), max_reconnect_attempts=50)
    backend.start(time.monotonic())

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    counts = []
    for n in range(1, 7):
        pump(backend, lambda n=n: sum(1 for e in emitted if getattr(e, "connection", "") == "close") >= n,
             timeout=15)
        counts.append(fds())
        backend._redial_at = time.monotonic()  # dial again now, not after the backoff
    end = _end_of(backend, emitted, lambda: None)  # the 7th failed dial ends the life
    backend.stop()
    return {"counts": counts, "end": end}


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

    proxy = silent_proxy()
    backend, emitted = make_backend(proxy.port, whatsapp=WhatsAppSettings(media_max_mb=1))
    backend.start(time.monotonic())
    go_event(backend.client, pb.Connected(status=True))
    pump(backend, lambda: backend.status is BotStatus.ONLINE)
    counter = [0]

    def jid(user: str, server: str = "s.whatsapp.net") -> Any:
        return pb.JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)

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

    from protocol import BotStatus
    from worker.commands import OPERATIONS

    proxy = silent_proxy()
    backend, emitted = make_backend(proxy.port)
    backend.start(time.monotonic())
    client = backend.client
    go_event(client, pb.Connected(status=True))
    pump(backend, lambda: backend.status is BotStatus.ONLINE)

    def jid(user: str, server: str = "s.whatsapp.net") -> Any:
        return pb.JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)

    client.me = pb.Device(JID=jid("15559990000"))
    alice = jid("15550001111")
    source = pb.MessageSource(Chat=alice, Sender=alice, IsFromMe=False, IsGroup=False)
    image = ImageMessage(mimetype="image/png", directPath="/v/x", mediaKey=b"k" * 32, fileLength=10)
    for i, message in enumerate((Message(conversation="ping"), Message(imageMessage=image))):
        info = pb.MessageInfo(MessageSource=source, ID=f"3EB0IN{i}", Type="text", Timestamp=1_764_100_000_000)
        go_event(client, pb.Message(Info=info, Message=message))
    pump(backend, lambda: len(backend.recent) >= 2)
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


def settled(backend: Any, result: Any, timeout: float = 60.0) -> Any:
    """An operation's result: a Pending (its call on the I/O thread) driven to its end."""
    from worker.offload import Pending

    return backend.io.wait(result, timeout) if isinstance(result, Pending) else result


def scenario_offloop() -> dict:
    """A slow upload and SendMessage (stand-ins for the network edge of a real client) run on the
    worker's I/O thread, not the loop's: while they take their time the loop's thread keeps
    coming round (each turn timed), and the result reaches the reply and the echo."""
    from neonize.proto import Neonize_pb2 as pb

    from protocol import BotStatus
    from worker.commands import OPERATIONS
    from worker.offload import Pending
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    proxy = silent_proxy()
    backend, emitted = make_backend(proxy.port)
    backend.start(time.monotonic())
    client = backend.client
    go_event(client, pb.Connected(status=True))
    pump(backend, lambda: backend.status is BotStatus.ONLINE)
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


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    name = sys.argv[1]
    try:
        result = SCENARIOS[name]()
    except Exception:
        result = {"error": traceback.format_exc()}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
