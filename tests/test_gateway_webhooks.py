"""Webhooks end to end: a real supervisor with simulated bots, a real gateway process, and
real HTTP receivers on loopback. Signatures are checked by an independent implementation."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from .gateway_harness import (
    SECRET,
    add_key,
    cli,
    configure,
    hook,
    independent_verify,
    stack_fixture,
    wait_until,
)

pytestmark = pytest.mark.slow
stack = stack_fixture()

MSG = "message-upsert"


def chatty(bot: str, count: int, rate: float = 40.0, **extra) -> dict:
    return {"id": bot, "simulated": {"message_rate": rate, "message_limit": count, "connect_delay": 0.0, **extra}}


def per_bot(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in events:
        out.setdefault(e["bot"], []).append(e)
    return out


def assert_in_seq_order(events: list[dict]) -> None:
    for bot, evs in per_bot(events).items():
        keys = [(e["pid"], e["seq"]) for e in evs]
        pids = list(dict.fromkeys(k[0] for k in keys))
        ordered = sorted(keys, key=lambda k: (pids.index(k[0]), k[1]))
        assert keys == ordered, f"{bot}: out of order: {keys}"


def test_events_reach_a_receiver_in_order_and_signed(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 30), chatty("b2", 30)])
    receiver = stack.receiver()
    port = configure(fleet, [hook(receiver, events=[MSG])])
    service = stack.supervisor(fleet)
    stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: len(receiver.accepted_events(MSG)) >= 60, 30, "60 message events")
    got = receiver.accepted()
    for r in got:
        assert independent_verify(SECRET, r.body, r.headers["botvisor-signature"]), r.headers
        assert not independent_verify("wrong" + SECRET, r.body, r.headers["botvisor-signature"])
        assert r.headers["botvisor-event-id"] == r.json["id"]
        assert r.headers["botvisor-delivery-id"].startswith("dlv_")
        assert r.headers["content-type"] == "application/json"
    events = [r.json for r in got]
    assert {e["type"] for e in events} == {MSG}
    assert len({e["id"] for e in events}) == len(events), "each event once, with its own id"
    assert_in_seq_order(events)
    for bot, evs in per_bot(events).items():  # every message the bot had, exactly
        texts = [e["data"]["text"] for e in evs]
        assert len(texts) == 30 and len(set(texts)) == 30, (bot, texts)
    # a tampered body no longer verifies
    r = got[0]
    assert not independent_verify(SECRET, r.body.replace(b'"', b"'", 1), r.headers["botvisor-signature"])


def test_500_then_200_is_accepted_once_with_the_same_event_id(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 10)])
    receiver = stack.receiver(lambda n, r: (500, {}, 0) if n == 0 else (200, {}, 0))
    port = configure(fleet, [hook(receiver, events=[MSG])])
    service = stack.supervisor(fleet)
    stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: len(receiver.accepted_events(MSG)) >= 10, 30, "10 accepted events")
    time.sleep(0.5)  # nothing more must come
    with receiver.lock:
        requests = list(receiver.requests)
    by_id: dict[str, list] = {}
    for r in requests:
        by_id.setdefault(r.headers["botvisor-event-id"], []).append(r)
    assert len(by_id) == 10
    for event_id, tries in by_id.items():
        assert [t.status for t in tries] == [500, 200], (event_id, [t.status for t in tries])
        assert tries[0].body == tries[1].body, "a retry re-sends the same envelope"
        assert tries[0].headers["botvisor-delivery-id"] != tries[1].headers["botvisor-delivery-id"]
        assert [t.headers["botvisor-delivery-attempt"] for t in tries] == ["1", "2"]
    assert_in_seq_order(receiver.accepted_events())


def test_400_is_not_retried_and_lands_in_dead_letters_then_retry_delivers(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 3)])
    state = {"status": 400}
    receiver = stack.receiver(lambda n, r: (state["status"], {}, 0))
    port = configure(fleet, [hook(receiver, name="app", events=[MSG])])
    service = stack.supervisor(fleet)
    gw = stack.gateway(fleet, port)
    key = add_key(fleet, "admin")
    stack.start_bots(service)
    auth = {"Authorization": f"Bearer {key}"}

    def dead():
        body = httpx.get(gw.base + "/v1/webhooks/dead", headers=auth).json()
        return body["dead"] if len(body["dead"]) == 3 else None

    rows = wait_until(dead, 30, "3 dead letters")
    time.sleep(0.3)
    assert len(receiver.requests) == 3, "a 400 is never retried"
    assert all(r["attempts"] == 1 and r["last_status"] == 400 for r in rows), rows
    listed = json.loads(cli(fleet, "webhooks", "list", "--json").stdout)
    assert len(listed["dead"]) == 3 and listed["endpoints"]["app"]["dead"] == 3
    state["status"] = 200
    out = cli(fleet, "webhooks", "retry", "--endpoint", "app")
    assert out.returncode == 0 and "3 dead letter(s)" in out.stdout, out
    wait_until(lambda: len(receiver.accepted()) == 3, 15, "the retried dead letters")
    assert sorted(r.headers["botvisor-event-id"] for r in receiver.accepted()) == sorted(r["event_id"] for r in rows)
    assert json.loads(cli(fleet, "webhooks", "list", "--json").stdout)["dead"] == []


def test_429_retry_after_is_honoured(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 1)])
    receiver = stack.receiver(lambda n, r: (429, {"Retry-After": "2"}, 0) if n == 0 else (200, {}, 0))
    port = configure(fleet, [hook(receiver, events=[MSG])])
    service = stack.supervisor(fleet)
    stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: receiver.accepted(), 30, "the event after its 429")
    first, second = receiver.requests[0], receiver.requests[1]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.9, f"retried after {second.at - first.at:.2f} s, Retry-After said 2"


def test_receiver_down_and_gateway_sigkilled_still_gets_every_event_in_order(stack, fleet_factory):
    # b1 talks the whole time: while the receiver is down, while the gateway is dead, after
    fleet = fleet_factory([chatty("b1", 60, rate=20.0), chatty("b2", 60, rate=20.0)], event_history=1000)
    receiver = stack.receiver()
    receiver.stop()  # down from the start: deliveries queue in the outbox
    port = configure(fleet, [hook(receiver, events=[MSG], retry={"initial": 0.2, "max": 0.5, "attempts": 1000})])
    service = stack.supervisor(fleet)
    gw = stack.gateway(fleet, port)
    stack.start_bots(service)
    tap = service.tap
    tap.wait_for(lambda m: getattr(m, "type", None) == MSG and m.data.text.endswith(" 10"), 20, "10 messages")
    gw.proc.send_signal(signal.SIGKILL)
    gw.kill()
    # events go on while the gateway is dead: they are recovered from the history
    tap.wait_for(lambda m: getattr(m, "type", None) == MSG and m.data.text.endswith(" 30"), 20, "30 messages")
    stack.gateway(fleet, port)
    receiver.start()
    wait_until(lambda: len(receiver.accepted_events(MSG)) >= 120, 60, "all 120 message events")
    events = receiver.accepted_events(MSG)
    assert len({e["id"] for e in events}) == len(events) == 120, "every event exactly once"
    assert_in_seq_order(events)
    assert any(e.get("recovered") for e in events), "some events came from the history"
    for bot, evs in per_bot(events).items():
        assert [e["data"]["text"] for e in evs] == [f"simulated message {i}" for i in range(1, 61)]


def test_a_slow_receiver_does_not_delay_another(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 20)])
    slow = stack.receiver(lambda n, r: (200, {}, 1.5))
    fast = stack.receiver()
    port = configure(fleet, [hook(slow, name="slow", events=[MSG], timeout=10.0),
                             hook(fast, name="fast", events=[MSG])])
    service = stack.supervisor(fleet)
    stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: len(fast.accepted_events(MSG)) >= 20, 20, "the fast receiver's 20 events")
    assert len(slow.accepted()) <= 2, "the slow one has barely begun"
    lags = [r.at - r.json["timestamp"] for r in fast.accepted()]
    assert max(lags) < 1.0, f"the fast receiver waited {max(lags):.2f} s"
