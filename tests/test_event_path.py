"""No event lost without a count; nothing forged or malformed gets through."""

from __future__ import annotations

import os
import time

import msgpack
import zmq

from protocol import BotStatus, Event, EventType, Heartbeat, Hello, decode, encode
from protocol.sequence import SequenceTracker
from protocol.signing import new_secret, sign


def test_ten_workers_times_ten_thousand_events_reach_the_tap_with_none_lost(fleet_factory, launch):
    n_bots, n_events = 10, 10_000
    bots = [{"id": f"b{i}", "simulated": {"message_rate": 4000.0, "message_limit": n_events, "seed": i}}
            for i in range(n_bots)]
    fleet = fleet_factory(bots, heartbeat_interval=0.5)
    service, tap = launch(fleet)
    tracker = SequenceTracker(from_zero=True)
    counts = {b["id"]: 0 for b in bots}

    def all_in(m) -> bool:
        if m.bot in counts:
            tracker.observe(m)
            if isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT:
                counts[m.bot] += 1
        return all(c == n_events for c in counts.values())

    tap.wait_for(all_in, timeout=240, what=f"{n_events} messages from each of {n_bots} bots", history=False)
    assert tracker.lost == 0, "the tap saw gaps in seq"
    statuses = service.control("status")["bots"]
    assert all(s["events_lost"] == 0 for s in statuses), statuses
    assert all(s["restarts"] == 0 for s in statuses)


def test_a_tap_that_stops_reading_loses_only_its_own_messages_and_counts_them(fleet_factory, launch):
    bots = [{"id": f"b{i}", "simulated": {"message_rate": 3000.0, "message_limit": 6000}} for i in range(2)]
    # per tap: 2,000 queued, then that tap loses messages. Room enough that the harness's tap, which
    # reads as fast as it can, never fills while the supervisor republishes a pass's batch (up to
    # 256 back to back); the slow tap (never read during the burst) still loses most of 12,000
    fleet = fleet_factory(bots, tap_queue=2000)
    slow = zmq.Context.instance().socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 10)
    slow.setsockopt(zmq.SUBSCRIBE, b"")
    slow.setsockopt(zmq.LINGER, 0)
    slow.connect(fleet.endpoint("tap"))
    try:
        service, tap = launch(fleet)
        counts = {"b0": 0, "b1": 0}
        fast = SequenceTracker(from_zero=True)

        def all_in(m) -> bool:
            if m.bot in counts:
                fast.observe(m)
                if isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT:
                    counts[m.bot] += 1
            return all(c == 6000 for c in counts.values())

        tap.wait_for(all_in, timeout=120, what="every message on the fast tap", history=False)
        assert fast.lost == 0, "a slow tap must not cost another tap anything"
        started = time.monotonic()
        service.control("status")
        assert time.monotonic() - started < 2.0, "the supervisor stays responsive"
        slow_tracker, received = SequenceTracker(), 0
        # what the slow tap kept, then its heartbeats: those never fall silent for long (they
        # beat at fixed phases), so the read ends at a deadline, not at a quiet moment
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and slow.poll(200):
            frames = slow.recv_multipart()
            if len(frames) == 2:  # the other is the welcome
                slow_tracker.observe(decode(frames[1]))
            received += 1
        assert received < 12_000 and slow_tracker.lost > 0, "the slow tap lost messages and saw the gaps"
    finally:
        slow.close(0)


def forger(endpoint: str) -> zmq.Socket:
    """A process-local publisher on the events endpoint that waits until the supervisor listens."""
    sock = zmq.Context.instance().socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    assert sock.poll(5000), "the supervisor never subscribed"
    sock.recv()
    return sock


def test_garbage_and_forged_messages_are_counted_and_dropped_and_the_supervisor_serves_on(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    real = tap.wait_for(lambda m: isinstance(m, Hello), what="hello")
    sock = forger(fleet.endpoint("events"))
    forged = Heartbeat("test", "b1", real.pid, 10_000, time.time(), BotStatus.OFFLINE)
    topic, payload = encode(forged)
    sends = [
        [os.urandom(40)],
        [b"test.b1.heartbeat", os.urandom(100), os.urandom(32)],
        [b"test.b1.heartbeat", msgpack.packb({"v": 1, "kind": "heartbeat"}), os.urandom(32)],
        [topic, payload, sign(new_secret(), topic, payload)],  # right shape, wrong key: another bot's voice
        [topic, payload],  # no signature at all
        [b"test.nobody.hello", payload, os.urandom(32)],
        [b"\xff\xfe", payload, os.urandom(32)],
        [topic, b"\x00" * (5 * 1024 * 1024), os.urandom(32)],  # oversized: the socket drops the peer
    ]
    for frames in sends:
        sock.send_multipart(frames)
    deadline = time.monotonic() + 10
    while True:
        stats = service.control("status")["stats"]
        if stats.get("rejected", 0) >= 7 or time.monotonic() > deadline:
            break
        tap.read(0.05)
    assert stats.get("rejected", 0) >= 7, stats
    assert stats.get("rejected_signature", 0) >= 4
    sock.close(0)
    # the real worker still gets through, and the forgery never reached the tap
    later = tap.wait_for(lambda m: isinstance(m, Heartbeat) and m.pid == real.pid and m.seq > 3, history=False,
                         what="the real worker's heartbeats")
    assert later.bot_status is not BotStatus.OFFLINE or later.seq < 10_000
    assert not [m for m in tap.seen if isinstance(m, Heartbeat) and m.seq == 10_000]
    status = service.control("status")["bots"][0]
    assert status["container_state"] == "running" and status["events_lost"] == 0 and status["restarts"] == 0
