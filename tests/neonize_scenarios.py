"""The neonize backend through neonize's own dispatch, one scenario per fresh interpreter
(tests/test_neonize_dispatch.py runs them; bus_scenarios.py says why a fresh one).

Events enter where Go hands them to Python: ``client.event.execute(uuid, address, size, code)``
with a real serialised protobuf, the QR through ``NewClient.__onQr`` and the login status
through the ctypes callback ``connect()`` builds. So the test fails when the backend subscribes
to nothing (execute then finds no handler, and connect() would pass Go an empty list), when the
QR hook is gone (neonize then prints the code to fd 1), or when a connect failure is handled as
anything but what whatsmeow does. The operations' scenarios are in tests/neonize_op_scenarios.py;
the driving (a backend, Go's calls) in tests/neonize_driver.py. Prints one JSON object; ends
with os._exit (neonize keeps a non-daemon thread).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from protocol.config import WhatsAppSettings
from tests.neonize_driver import go_event, go_string_callback, jid, make_backend, pump, refused_port, shape, silent_proxy
from tests.neonize_op_scenarios import scenario_contract, scenario_offloop, scenario_operations  # noqa: F401 (run from here)

# -- scenarios: events and the session -----------------------------------------------------------
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
