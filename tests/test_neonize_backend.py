"""The neonize backend in-process: a real neonize client, real protobuf events handed over as
Go would hand them (through the handler, the queue and the wakeup pipe), and the worker's
reactions: QR image, phone pairing, open, whatsmeow-owned reconnects, fatal errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from neonize.proto import Neonize_pb2 as pb

from protocol import ConnectionUpdate, CredsUpdate, ErrorEvent
from worker.backends.neonize import NEONIZE_STORE, QR_FILE, NeonizeBackend, store_uri
from worker.errors import BotCrash, FatalBotError

from . import neonize_driver
from .neonize_driver import pump
from .test_neonize_worker import SilentProxy, refused_port


#: each test makes a Go client: conftest.py runs it in an interpreter of its own
pytestmark = pytest.mark.own_process


def make_backend(tmp_path: Path, monkeypatch, proxy_port: int, **bot) -> tuple[NeonizeBackend, list]:
    monkeypatch.chdir(tmp_path)  # the backend moves the cwd into the bot's directory; undo it afterwards
    bot_dir = tmp_path / "bot dir #1"  # a space and a '#' must not cut the SQLite URI
    bot_dir.mkdir(mode=0o700)
    return neonize_driver.make_backend(proxy_port, bot_dir, **bot)


def test_qr_codes_are_published_and_written_and_phone_pairing_starts_after_the_first(tmp_path, monkeypatch):
    backend, emitted = make_backend(tmp_path, monkeypatch, refused_port(), phone_number="15551234567",
                                    max_reconnect_attempts=5)
    backend.start(time.monotonic())
    store = backend.ctx.bot_dir / NEONIZE_STORE
    pump(backend, lambda: any(isinstance(e, ConnectionUpdate) and e.connection == "close" for e in emitted))
    assert store.is_file(), f"the store must be in the bot's directory ({store_uri(backend.ctx.bot_dir)})"
    backend._on_qr(None, b"2@ref,noise,ident,adv")  # what Go's QR callback hands over
    pump(backend, lambda: any(isinstance(e, ErrorEvent) for e in emitted))
    qr = [e for e in emitted if isinstance(e, ConnectionUpdate) and e.qr]
    assert qr == [ConnectionUpdate("connecting", qr="2@ref,noise,ident,adv", attempt=1)]
    assert (backend.ctx.bot_dir / QR_FILE).read_bytes().startswith(b"\x89PNG")
    pairing = [e for e in emitted if isinstance(e, ErrorEvent)][0]
    # offline the client is not live, and neonize says so: the call was made, after the QR
    assert pairing.code == "pair-failed" and not pairing.fatal
    assert pairing.message == "pairing by phone code failed: websocket not connected"
    backend._on_event(None, pb.Connected(status=True))
    pump(backend, lambda: isinstance(emitted[-1], CredsUpdate))
    assert not (backend.ctx.bot_dir / QR_FILE).exists(), "a stale QR image must not outlive the pairing"
    assert emitted[-1].reason == "connected" and emitted[-1].verified
    backend.stop()


def test_while_connect_runs_whatsmeow_reconnects_and_the_worker_only_counts_then_gives_up(tmp_path, monkeypatch):
    proxy = SilentProxy()
    try:
        backend, emitted = make_backend(tmp_path, monkeypatch, proxy.port, max_reconnect_attempts=3)
        t0 = time.monotonic()
        backend.start(t0)
        assert proxy.accepted.wait(10), "connect() is dialling through the proxy"
        backend._on_event(None, pb.Connected(status=True))
        pump(backend, lambda: backend.status == "online", now=t0)
        backend._on_event(None, pb.Disconnected(status=True))
        pump(backend, lambda: backend.status == "offline", now=t0 + 1)
        drop = emitted[-1]
        assert drop == ConnectionUpdate("close", reason="disconnected", attempt=0, retry_in=0.5)
        assert backend.poll(t0 + 1.2) == pytest.approx(t0 + 1.5), "the next look is the worker's only deadline"
        assert backend._dial_thread is not None and backend._redial_at is None, "no second dial on top of whatsmeow"
        backend.poll(t0 + 1.5)
        assert emitted[-1].attempt == 1 and emitted[-1].retry_in == 1.0
        assert emitted[-1].reason == "still offline; whatsmeow is reconnecting (last: disconnected)"
        backend.poll(t0 + 2.5)
        assert (emitted[-1].attempt, emitted[-1].retry_in) == (2, 2.0)
        with pytest.raises(BotCrash, match="gave up after 3 connection attempts"):
            backend.poll(t0 + 4.5)
        backend.stop()
    finally:
        proxy.close()  # the dial ends, and with it neonize's non-daemon thread


def test_a_reconnect_that_comes_back_resets_the_count(tmp_path, monkeypatch):
    proxy = SilentProxy()
    try:
        backend, emitted = make_backend(tmp_path, monkeypatch, proxy.port, max_reconnect_attempts=3)
        t0 = time.monotonic()
        backend.start(t0)
        assert proxy.accepted.wait(10)
        for event in (pb.Connected(), pb.KeepAliveTimeout(ErrorCount=2)):
            backend._on_event(None, event)
        pump(backend, lambda: backend.status == "offline", now=t0)
        backend.poll(t0 + 0.5)
        assert backend.connection_attempts == 1
        backend._on_event(None, pb.KeepAliveRestored())
        pump(backend, lambda: backend.status == "online", now=t0 + 0.6)
        assert emitted[-1] == ConnectionUpdate("open", reason="keepalive restored", attempt=1)
        assert backend.connection_attempts == 0 and backend.poll(t0 + 100) is None
        backend.stop()
    finally:
        proxy.close()


def test_a_fatal_event_marks_the_creds_unverified_and_ends_the_worker_as_fatal(tmp_path, monkeypatch):
    backend, emitted = make_backend(tmp_path, monkeypatch, refused_port(), phone_number="15551234567")
    backend.start(time.monotonic())
    backend._on_event(None, pb.TemporaryBan(Code=pb.TemporaryBan.BLOCKED_BY_USERS, Expire=600))
    before = time.time()
    with pytest.raises(FatalBotError) as info:
        pump(backend, lambda: False)
    assert (info.value.code, info.value.status, info.value.exit_code) == ("temporary-ban", 402, 78)
    assert before + 590 < info.value.expires_at < time.time() + 610
    assert emitted[-1] == CredsUpdate(verified=False, phone_number="15551234567", last_updated=emitted[-1].last_updated,
                                      reason="temporary-ban")
    backend.stop()
