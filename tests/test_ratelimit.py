"""The per-bot rate limit: a token bucket (pure, fake clock) and the outbox in the worker loop."""

from __future__ import annotations

import pytest

from protocol import ErrorEvent, Event, EventType
from worker.errors import CommandError
from worker.ratelimit import Outbox, TokenBucket

from .worker_harness import StandaloneWorker


def test_the_bucket_allows_one_message_per_interval_without_bursts():
    bucket = TokenBucket.per_minute(6)  # one every 10 s
    assert bucket.take(100.0)
    assert not bucket.take(100.0)
    assert bucket.wait(100.0) == pytest.approx(10.0)
    assert bucket.wait(104.0) == pytest.approx(6.0)
    assert not bucket.take(109.9)
    assert bucket.take(110.0)
    assert bucket.wait(1000.0) == 0 and bucket.tokens == pytest.approx(1.0), "idle time must not save up a burst"


def test_a_burst_allowance_is_spent_then_refilled():
    bucket = TokenBucket(rate=1.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(0.0, 3) == pytest.approx(3.0)
    assert bucket.take(1.0) and not bucket.take(1.0)


def test_a_clock_going_backwards_never_creates_tokens():
    bucket = TokenBucket(rate=1.0)
    assert bucket.take(50.0)
    assert not bucket.take(40.0) and not bucket.take(50.5)
    assert bucket.take(51.0)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.errors: list[tuple[int, str, str]] = []
        self.online = True
        self.fail_next = False

    def send(self, to: str, text: str) -> dict:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("network went away")
        self.sent.append((to, text))
        return {"id": f"M{len(self.sent)}", "to": to}

    def outbox(self, per_minute: float = 60, max_queued: int = 100) -> Outbox:
        return Outbox(TokenBucket.per_minute(per_minute), send=self.send, ready=lambda: self.online,
                      on_error=lambda n, to, exc: self.errors.append((n, to, str(exc))), max_queued=max_queued)


def test_over_the_limit_a_message_waits_in_order_and_is_sent_when_its_token_comes():
    r = Recorder()
    box = r.outbox(per_minute=60)
    first = box.submit("a@s.whatsapp.net", "1", now=0.0)
    assert first["sent"] is True and first["id"] == "M1"
    second = box.submit("b@s.whatsapp.net", "2", now=0.0)
    third = box.submit("c@s.whatsapp.net", "3", now=0.5)
    assert (second["sent"], second["queued"], second["position"], second["expected_delay"]) == (False, True, 1, 1.0)
    assert (third["position"], third["expected_delay"]) == (2, 1.5)
    assert box.flush(0.9) == pytest.approx(1.0) and len(r.sent) == 1
    assert box.flush(1.0) == pytest.approx(2.0)
    assert box.flush(2.0) is None
    assert [text for _, text in r.sent] == ["1", "2", "3"]


def test_a_new_message_never_overtakes_queued_ones():
    r = Recorder()
    box = r.outbox(per_minute=60)
    box.submit("a@x", "1", 0.0)
    box.submit("a@x", "2", 0.0)
    later = box.submit("a@x", "3", 5.0)  # a token is there again, but "2" waits first
    assert later["queued"] is True and later["position"] == 2
    box.flush(5.0)
    box.flush(6.0)
    assert [text for _, text in r.sent] == ["1", "2", "3"]


def test_queued_messages_wait_while_offline_and_a_failed_send_is_reported_not_dropped():
    r = Recorder()
    box = r.outbox(per_minute=60)
    box.submit("a@x", "1", 0.0)
    box.submit("a@x", "2", 0.0)
    box.submit("a@x", "3", 0.0)
    r.online = False
    assert box.flush(10.0) is None and len(box.queue) == 2, "offline: nothing is sent, nothing is lost"
    r.online = True
    r.fail_next = True
    box.flush(11.0)
    assert r.errors == [(1, "a@x", "network went away")]
    box.flush(12.0)
    assert [text for _, text in r.sent] == ["1", "3"] and not box.queue


def test_an_immediate_send_error_goes_back_to_the_caller_and_spends_no_token():
    r = Recorder()
    box = r.outbox()
    r.fail_next = True
    with pytest.raises(RuntimeError):
        box.submit("a@x", "1", 0.0)
    assert box.submit("a@x", "2", 0.0)["sent"] is True


def test_a_full_outbox_refuses_with_a_clear_error():
    r = Recorder()
    box = r.outbox(max_queued=2)
    for _ in range(3):
        box.submit("a@x", "t", 0.0)
    with pytest.raises(CommandError, match="2 messages already wait"):
        box.submit("a@x", "t", 0.0)


def test_the_worker_queues_over_the_limit_and_sends_later_from_its_loop(fleet_factory):
    fleet = fleet_factory([{"id": "b1", "messages_per_minute": 120.0}])  # one every 0.5 s
    with StandaloneWorker(fleet, "b1") as worker:
        worker.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE
                        and m.data.connection == "open", what="b1 open")
        replies = [worker.call("send", {"to": "+1 555 000 1111", "text": f"m{i}"}) for i in range(3)]
        assert replies[0]["sent"] is True and replies[0]["to"] == "15550001111@s.whatsapp.net"
        assert [r["queued"] for r in replies[1:]] == [True, True]
        assert 0 < replies[1]["expected_delay"] <= 0.5 < replies[2]["expected_delay"] <= 1.0
        echoes: list[Event] = []

        def three_sent(m) -> bool:
            if isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT and m.data.from_me:
                echoes.append(m)
            return len(echoes) == 3

        worker.wait_for(three_sent, timeout=10, what="all three messages sent")
        assert [e.data.text for e in echoes] == ["m0", "m1", "m2"]
        gaps = [b.ts - a.ts for a, b in zip(echoes, echoes[1:])]
        assert all(gap >= 0.4 for gap in gaps), f"sends must be spaced by the limit (0.5 s): {gaps}"
        assert not any(isinstance(m, Event) and isinstance(m.data, ErrorEvent) for m in worker.seen)
        bad = worker.call("send", {"to": "not a number", "text": "x"}, ok=False)
        assert "phone number with country code or a full JID" in bad
