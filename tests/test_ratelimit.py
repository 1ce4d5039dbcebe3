"""The per-bot rate limit: a token bucket (pure, fake clock), and queued sends in the worker loop
(the outbox itself: tests/test_outbox.py)."""

from __future__ import annotations

import pytest

from protocol import ErrorEvent, Event, EventType
from worker.ratelimit import TokenBucket

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


def test_the_worker_queues_over_the_limit_and_sends_later_from_its_loop(fleet_factory):
    fleet = fleet_factory([{"id": "b1", "messages_per_minute": 120.0}])  # one every 0.5 s
    with StandaloneWorker(fleet, "b1") as worker:
        worker.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.CONNECTION_UPDATE
                        and m.data.connection == "open", what="b1 open")
        replies = [worker.call("send", {"to": "+1 555 000 1111", "text": f"m{i}"}) for i in range(3)]
        assert replies[0]["state"] == "sent" and replies[0]["to"] == "15550001111@s.whatsapp.net"
        assert [r["state"] for r in replies[1:]] == ["queued", "queued"]
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
