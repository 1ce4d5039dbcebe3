"""The durable outbox on the real neonize path, offline: a real neonize client (dialling a refused
proxy), real protobuf events, real sends into neonize's Go binding and whatsmeow's refusal.

neonize 0.5.2 cannot send under a chosen message id (docs/sends.md, "neonize"): these tests
pin that finding to neonize's own API, so an upgrade that adds it fails here and says so, and
check that the outbox then never retries an interrupted send (a retry would be a new message).
"""

from __future__ import annotations

import inspect
import logging
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from neonize import _binder
from neonize.client import NewClient
from neonize.proto import Neonize_pb2 as pb

from protocol import SendStatus
from protocol.config import BotConfig
from worker.backends.base import BackendContext
from worker.backends.neonize import NeonizeBackend
from worker.errors import CommandError
from worker.outbox import Outbox
from worker.outbox_store import OUTBOX_FILE, OutboxStore
from worker.ratelimit import TokenBucket

from .test_neonize_backend import pump
from .test_neonize_worker import refused_port


def make(tmp_path: Path, monkeypatch) -> tuple[NeonizeBackend, list]:
    monkeypatch.chdir(tmp_path)  # the backend moves the cwd into the bot's directory
    bot_dir = tmp_path / "bot_n1"
    bot_dir.mkdir(mode=0o700, exist_ok=True)
    events: list = []
    config = BotConfig(id="n1", backend="neonize", proxy=f"http://127.0.0.1:{refused_port()}",
                       max_reconnect_attempts=50)
    ctx = BackendContext(bot=config, bot_dir=bot_dir, emit=events.append, log=logging.getLogger("test.neonize"))
    return NeonizeBackend(ctx), events


def test_neonize_0_5_2_offers_no_way_to_send_under_a_chosen_message_id():
    assert version("neonize") == "0.5.2", "a new neonize: check whether send_message can take an id now"
    params = set(inspect.signature(NewClient.send_message).parameters)
    assert params == {"self", "to", "message", "link_preview", "ghost_mentions", "mentions_are_lids",
                      "add_msg_secret"}, "no id / SendRequestExtra parameter"
    # the Go binding: SendMessage(uuid, to, len, message, len) has no SendRequestExtra, unlike SendFBMessage
    assert len(_binder.gocode.SendMessage.argtypes) == 5
    assert len(_binder.gocode.SendFBMessage.argtypes) == 9
    assert NeonizeBackend.keeps_message_id is False


@pytest.mark.own_process  # it makes a Go client (conftest.py)
def test_an_interrupted_send_is_reported_possibly_delivered_and_never_retried(tmp_path, monkeypatch):
    backend, events = make(tmp_path, monkeypatch)
    store = OutboxStore(backend.ctx.bot_dir / OUTBOX_FILE)  # what a killed worker left: an attempt under way
    store.add("0123456789abcdef", "send", {"to": "15550001111@s.whatsapp.net", "text": "hi"}, None, sending=True)
    store.add("fedcba9876543210", "send", {"to": "15550001111@s.whatsapp.net", "text": "next"}, None)
    store.close()
    outbox = Outbox.for_bot_dir(backend, TokenBucket.per_minute(60), backend.ctx.bot_dir, events.append)
    (status,) = [e for e in events if isinstance(e, SendStatus)]
    assert (status.id, status.state, status.message_id, status.attempts) == ("0123456789abcdef", "failed", None, 1)
    assert "may have been delivered" in status.reason and "neonize backend cannot resend" in status.reason
    assert [e.id for e in outbox.queue] == ["fedcba9876543210"], "the sends after it still go, in order"


def drain_until(backend, done, timeout: float = 30.0) -> None:
    """What the worker's loop does with the I/O thread's results, until ``done()`` (bounded)."""
    import select

    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        assert left > 0, "the I/O thread's call did not finish in time"
        select.select([backend.io.fd], [], [], min(left, 0.5))
        backend.io.drain()


@pytest.mark.own_process  # it makes a Go client (conftest.py)
def test_a_send_goes_through_neonize_and_whatsmeow_and_its_failure_is_published(tmp_path, monkeypatch):
    backend, events = make(tmp_path, monkeypatch)
    outbox = Outbox.for_bot_dir(backend, TokenBucket.per_minute(60), backend.ctx.bot_dir, events.append)
    backend.outbox = outbox
    backend.start(time.monotonic())
    backend._on_event(None, pb.Connected(status=True))  # as Go hands it over
    pump(backend, lambda: backend.status == "online")
    assert backend.new_message_id() is None
    # the real send_message: into the Go binding, where whatsmeow refuses an unpaired device
    # the call runs on the worker's I/O thread (worker/offload.py); its outcome reaches the loop later
    pending = outbox.submit("send", {"to": "15550001111@s.whatsapp.net", "text": "hello"}, 0.0)
    with pytest.raises(CommandError, match=r"send failed: .*\(send [0-9a-f]{16}\)") as info:
        backend.io.wait(pending, 30)
    (status,) = [e for e in events if isinstance(e, SendStatus)]
    assert status.state == "failed" and status.message_id is None and status.reason in str(info.value)
    queued_first = outbox.submit  # a queued send goes through the same real path from the loop
    outbox.bucket.tokens = 0.0
    reply = queued_first("send", {"to": "15550001111@s.whatsapp.net", "text": "later"}, 0.0)
    assert (reply["state"], reply["message_id"]) == ("queued", None), "neonize's id is known only once sent"
    outbox.flush(10.0)
    drain_until(backend, lambda: len([e for e in events if isinstance(e, SendStatus)]) == 2)
    last = [e for e in events if isinstance(e, SendStatus)][-1]
    assert (last.id, last.state, last.attempts) == (reply["id"], "failed", 1) and "send failed" in last.reason
    with pytest.raises(CommandError, match="cannot send under a chosen message id"):
        backend.send_text("15550001111@s.whatsapp.net", "x", message_id="3EB0ABCDEF")
    backend.stop()
