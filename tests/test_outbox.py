"""The durable outbox in-process, on the real simulated backend and its delivery log: stored before
the answer, in order through the rate limit, bounded, resumed after a crash under the same
WhatsApp id (the crash window simulated on both sides of the backend call), outcomes published."""

from __future__ import annotations

import logging
import re
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from protocol import BotStatus, ErrorEvent, MessageUpsert, SendStatus
from protocol.config import BotConfig
from worker import commands
from worker.backends.base import BackendContext
from worker.backends.sim_deliveries import read_deliveries
from worker.backends.simulated import SimulatedBackend
from worker.errors import CommandError
from worker.outbox import MAX_ATTEMPTS, Outbox
from worker.outbox_store import OUTBOX_FILE, OutboxStore
from worker.ratelimit import TokenBucket


class Killed(BaseException):
    """The worker dying right here: nothing after this line runs (the outbox catches Exception only)."""


class Worker:
    """One worker's outbox and backend on a bot directory; a new Worker on the same directory is the
    replacement after a crash. Time is a fake monotonic clock."""

    def __init__(self, root: Path, per_minute: float = 60, outbox_max: int = 100) -> None:
        bot_dir = bot_dir_of(root)  # auth/<server>/bot_<id>: the credentials metadata stays inside root
        bot_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        self.events: list = []
        ctx = BackendContext(bot=BotConfig(id="s1"), bot_dir=bot_dir, emit=self.events.append,
                             log=logging.getLogger("test.outbox"))
        self.backend = SimulatedBackend(ctx)
        self.backend.start(0.0)
        self.backend.poll(1.0)  # connect_delay passed: online
        assert self.backend.status is BotStatus.ONLINE
        self.outbox = Outbox.for_bot_dir(self.backend, TokenBucket.per_minute(per_minute), bot_dir, self.events.append,
                                         max_pending=outbox_max)
        self.backend.outbox = self.outbox

    def send(self, text: str, to: str = "15550001111", now: float = 0.0) -> dict:
        return self.outbox.submit("send", {"to": commands.to_jid(to), "text": text}, now)

    def statuses(self) -> list[SendStatus]:
        return [e for e in self.events if isinstance(e, SendStatus)]

    def echoes(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, MessageUpsert) and e.from_me]


def bot_dir_of(root: Path) -> Path:
    return root / "auth" / "test" / "bot_s1"


def received(root: Path) -> list[tuple[str, str]]:
    """What the simulated receivers show: (text, message id) per new message, in delivery order."""
    return [(d["text"], d["message_id"]) for d in read_deliveries(bot_dir_of(root)) if not d["duplicate"]]


def test_a_send_is_stored_before_the_answer_and_every_send_has_an_id_sent_or_queued(tmp_path):
    w = Worker(tmp_path)
    first = w.outbox.submit("send", {"to": "a@s.whatsapp.net", "text": "1"}, 0.0)
    second = w.outbox.submit("send", {"to": "b@s.whatsapp.net", "text": "2"}, 0.0)
    assert first["state"] == "sent" and first["message_id"].startswith("SIMOUT") and first["id"]
    assert (second["state"], second["position"], second["expected_delay"]) == ("queued", 1, 1.0)
    assert second["id"] != first["id"] and second["message_id"] and second["message_id"] != first["message_id"]
    stored = OutboxStore(bot_dir_of(tmp_path) / OUTBOX_FILE)  # a second connection: what a new worker would read
    assert stored.get(second["id"]).state == "queued" and stored.get(second["id"]).message_id == second["message_id"]
    assert stored.get(first["id"]).state == "sent"
    assert [(s.id, s.state, s.message_id) for s in w.statuses()] == [(first["id"], "sent", first["message_id"])]
    w.outbox.flush(1.0)
    assert [(s.id, s.state, s.message_id, s.to) for s in w.statuses()][1] == \
        (second["id"], "sent", second["message_id"], "b@s.whatsapp.net")
    assert received(tmp_path) == [("1", first["message_id"]), ("2", second["message_id"])]


def test_sends_go_in_order_through_the_rate_limit_and_never_overtake(tmp_path):
    w = Worker(tmp_path, per_minute=60)  # one a second
    replies = [w.outbox.submit("send", {"to": "a@x", "text": str(i)}, 0.0) for i in range(4)]
    assert w.outbox.flush(0.5) == pytest.approx(1.0), "the next token is due at 1 s"
    late = w.outbox.submit("send", {"to": "a@x", "text": "late"}, 5.0)  # a token is there, but 3 wait before it
    assert late["state"] == "queued" and late["position"] == 4
    assert w.outbox.flush(5.0) == pytest.approx(6.0)
    for now in (6.0, 7.0, 8.0):
        w.outbox.flush(now)
    assert w.outbox.flush(9.0) is None and not w.outbox.queue
    assert [t for t, _ in received(tmp_path)] == ["0", "1", "2", "3", "late"] == w.echoes()
    assert [s.id for s in w.statuses()] == [r["id"] for r in replies + [late]]


def test_the_outbox_is_bounded_by_outbox_max_with_a_clear_refusal_that_stores_nothing(tmp_path):
    w = Worker(tmp_path, outbox_max=2)
    w.send("sent at once")
    w.send("q1")
    w.send("q2")
    with pytest.raises(CommandError, match=r"the outbox is full: 2 sends wait \(outbox_max = 2\)"):
        w.send("refused")
    assert OutboxStore(bot_dir_of(tmp_path) / OUTBOX_FILE).count_pending() == 2
    w.outbox.flush(1.0)
    assert w.send("room again", now=1.5)["state"] == "queued"


def test_queued_sends_survive_the_worker_and_a_new_one_sends_them_in_order_under_their_ids(tmp_path):
    w = Worker(tmp_path)
    replies = [w.send(f"m{i}") for i in range(5)]
    assert [r["state"] for r in replies] == ["sent"] + ["queued"] * 4
    del w  # SIGKILL: no close, nothing flushed
    w2 = Worker(tmp_path)
    assert [e.id for e in w2.outbox.queue] == [r["id"] for r in replies[1:]]
    for now in (1.0, 2.0, 3.0, 4.0):
        w2.outbox.flush(now)
    assert received(tmp_path) == [(f"m{i}", r["message_id"]) for i, r in enumerate(replies)]
    assert [(s.id, s.message_id) for s in w2.statuses()] == [(r["id"], r["message_id"]) for r in replies[1:]]


def test_killed_after_the_backend_delivered_but_before_the_outbox_recorded_it_the_retry_keeps_the_id(tmp_path):
    w = Worker(tmp_path)
    w.send("first")
    queued = w.send("interrupted")
    real_send = w.backend.send_text

    def deliver_then_die(*args, **kwargs):
        real_send(*args, **kwargs)
        raise Killed  # the window: WhatsApp has it, the outbox row still says "sending"

    w.backend.send_text = deliver_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        w.outbox.flush(1.0)
    assert OutboxStore(bot_dir_of(tmp_path) / OUTBOX_FILE).get(queued["id"]).state == "sending"
    w2 = Worker(tmp_path)
    w2.outbox.flush(2.0)
    deliveries = [d for d in read_deliveries(bot_dir_of(tmp_path)) if d["text"] == "interrupted"]
    assert [(d["message_id"], d["duplicate"]) for d in deliveries] == [(queued["message_id"], False),
                                                                       (queued["message_id"], True)]
    assert received(tmp_path) == [("first", w.statuses()[0].message_id), ("interrupted", queued["message_id"])]
    status = w2.statuses()
    assert [(s.id, s.state, s.message_id, s.attempts) for s in status] == \
        [(queued["id"], "sent", queued["message_id"], 2)]
    upserts = [(e.id, e.text) for e in w.events + w2.events if isinstance(e, MessageUpsert) and e.from_me]
    assert upserts[1:] == [(queued["message_id"], "interrupted")] * 2, "upserted twice under its one id"


def test_killed_after_the_attempt_was_recorded_but_before_the_backend_ran_it_is_sent_once(tmp_path):
    w = Worker(tmp_path)
    w.send("first")
    queued = w.send("never left")

    def die(*args, **kwargs):
        raise Killed

    w.backend.send_text = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        w.outbox.flush(1.0)
    w2 = Worker(tmp_path)
    w2.outbox.flush(2.0)
    assert [(d["message_id"], d["duplicate"]) for d in read_deliveries(bot_dir_of(tmp_path)) if d["text"] == "never left"] == \
        [(queued["message_id"], False)]


def test_a_send_that_kills_every_worker_is_given_up_after_max_attempts_not_retried_forever(tmp_path):
    first = Worker(tmp_path)
    first.send("first")
    poison = first.send("poison")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        w = Worker(tmp_path)
        assert [e.id for e in w.outbox.queue] == [poison["id"]]
        w.backend.send_text = lambda *a, **k: (_ for _ in ()).throw(Killed)  # type: ignore[method-assign]
        with pytest.raises(Killed):
            w.outbox.flush(float(attempt))
    last = Worker(tmp_path)
    assert not last.outbox.queue
    (status,) = last.statuses()
    assert (status.id, status.state, status.attempts) == (poison["id"], "failed", MAX_ATTEMPTS)
    assert "gave up after 5 attempts" in status.reason


def test_a_queued_send_that_fails_is_published_failed_with_why_and_the_rest_go_on(tmp_path):
    w = Worker(tmp_path)
    w.send("first")
    bad = w.outbox.submit("send", {"to": "a@x", "text": "bad", "bogus": 1}, 0.0)  # the backend refuses it
    good = w.send("after")
    w.outbox.flush(1.0)
    w.outbox.flush(2.0)
    failed, sent = w.statuses()[1:]
    assert (failed.id, failed.state, failed.message_id) == (bad["id"], "failed", bad["message_id"])
    assert "unexpected keyword argument 'bogus'" in failed.reason
    assert (sent.id, sent.state) == (good["id"], "sent")


def test_an_immediate_send_that_fails_tells_the_caller_and_publishes_it(tmp_path):
    w = Worker(tmp_path)
    with pytest.raises(CommandError, match=r"TypeError: .*bogus.* \(send [0-9a-f]{16}\)"):
        w.outbox.submit("send", {"to": "a@x", "text": "t", "bogus": 1}, 0.0)
    (status,) = w.statuses()
    assert status.state == "failed" and "bogus" in status.reason
    assert w.send("next")["state"] == "sent", "a failed immediate send spends no token"


def test_offline_queued_sends_wait_and_an_offline_bot_with_an_empty_outbox_refuses(tmp_path):
    w = Worker(tmp_path)
    w.send("first")
    queued = w.send("waits")
    w.backend.status = BotStatus.OFFLINE
    assert w.outbox.flush(5.0) is None and len(w.outbox.queue) == 1
    assert w.send("also waits")["state"] == "queued", "behind a queued send, offline is no refusal"
    w.backend.status = BotStatus.ONLINE
    w.outbox.flush(6.0)
    w.outbox.flush(7.0)
    assert [s.id for s in w.statuses()][1] == queued["id"] and not w.outbox.queue
    w.backend.status = BotStatus.LOADING
    with pytest.raises(CommandError, match="bot is loading, not connected"):
        w.send("refused", now=30.0)


def test_the_outbox_file_is_private_and_in_wal_mode(tmp_path):
    old = os.umask(0o022)
    try:
        w = Worker(tmp_path)
        w.send("x")
    finally:
        os.umask(old)
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{bot_dir_of(tmp_path) / OUTBOX_FILE}{suffix}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sqlite3.connect(bot_dir_of(tmp_path) / OUTBOX_FILE).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_corrupt_outbox_file_is_set_aside_and_reported_not_fatal(tmp_path):
    bot_dir_of(tmp_path).mkdir(parents=True)
    (bot_dir_of(tmp_path) / OUTBOX_FILE).write_bytes(b"this is not a database" * 100)
    w = Worker(tmp_path)
    (error,) = [e for e in w.events if isinstance(e, ErrorEvent)]
    assert error.code == "corrupt-outbox" and ".corrupt-" in error.file and Path(error.file).exists()
    assert w.send("works")["state"] == "sent"


def test_the_send_operation_goes_through_the_outbox(tmp_path):
    w = Worker(tmp_path, per_minute=0.01)
    sent = commands.OPERATIONS["send"](w.backend, {"to": "+1 555 000 1111", "text": "hi"})
    queued = commands.OPERATIONS["send"](w.backend, {"to": "15550002222", "text": "later"})
    assert (sent["state"], sent["to"], queued["state"]) == ("sent", "15550001111@s.whatsapp.net", "queued")
    assert OutboxStore(bot_dir_of(tmp_path) / OUTBOX_FILE).get(queued["id"]).args == {"to": "15550002222@s.whatsapp.net",
                                                                         "text": "later"}


def test_a_non_sending_operation_is_refused_by_name(tmp_path):
    w = Worker(tmp_path)
    with pytest.raises(CommandError, match="'presence' is not a sending operation"):
        w.outbox.submit("presence", {}, 0.0)


@pytest.mark.parametrize("sync, level", [("full", 2), ("normal", 1)])
def test_outbox_sync_sets_how_hard_each_change_is_flushed(tmp_path, sync, level):
    store = OutboxStore(tmp_path / "outbox-alone.sqlite3", sync)
    assert store.db.execute("PRAGMA synchronous").fetchone() == (level,)


@pytest.mark.parametrize("entry, message", [
    ({"outbox_max": 0}, "bots[0] (a).outbox_max: must be at least 1, got 0"),
    ({"outbox_sync": "fast"}, "bots[0] (a).outbox_sync"),
])
def test_bad_outbox_settings_are_refused_naming_the_key(tmp_path, entry, message):
    from protocol.config import load_config

    path = tmp_path / "botvisor.toml"
    key, value = next(iter(entry.items()))
    path.write_text(f'[[bots]]\nid = "a"\n{key} = {value!r}\n'.replace("'", '"'))
    with pytest.raises(Exception, match=re.escape(message)):
        load_config(path)
    path.write_text('[supervisor]\noutbox_max = 5\n[[bots]]\nid = "a"\n')
    assert load_config(path).bot("a").outbox_max == 5, "inherited from [supervisor]"


def test_every_sending_operation_is_stored_and_resumed_by_a_new_worker_under_its_id(tmp_path):
    import time

    w = Worker(tmp_path, per_minute=60)
    jid = "15550001111@s.whatsapp.net"
    first = w.outbox.submit("send", {"to": jid, "text": "hello"}, time.monotonic())
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    calls = [("react", {"chat": jid, "message_id": first["message_id"], "emoji": "👍"}),
             ("edit", {"chat": jid, "message_id": first["message_id"], "text": "hello!"}),
             ("send_media", {"to": jid, "kind": "image", "path": str(picture), "caption": "look"}),
             ("send", {"to": jid, "text": "quoting", "quote": first["message_id"]}),
             ("revoke", {"chat": jid, "message_id": first["message_id"]})]
    replies = [commands.OPERATIONS[op](w.backend, args) for op, args in calls]  # within 1 s: all wait
    assert [r["state"] for r in replies] == ["queued"] * 5 and all(r["message_id"] for r in replies)
    del w  # killed with five sends queued
    w2 = Worker(tmp_path, per_minute=6000)
    assert [e.op for e in w2.outbox.queue] == ["react", "edit", "send_media", "send", "revoke"]
    later = time.monotonic() + 2
    for i in range(5):
        w2.outbox.flush(later + i)
    assert [(s.op, s.state, s.message_id) for s in w2.statuses()] == \
        [(op, "sent", r["message_id"]) for (op, _), r in zip(calls, replies)]
    shown = [(d["op"], d["message_id"]) for d in read_deliveries(bot_dir_of(tmp_path)) if not d["duplicate"]]
    assert shown == [("send", first["message_id"])] + [(op, r["message_id"]) for (op, _), r in zip(calls, replies)]
    assert w2.backend.sent[-1]["op"] == "revoke" and w2.backend.sent[-1]["target"] == first["message_id"]
