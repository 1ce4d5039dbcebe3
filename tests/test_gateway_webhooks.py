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


@pytest.mark.parametrize("sync", ["full", "normal"])  # a SIGKILL loses nothing under either
def test_receiver_down_and_gateway_sigkilled_still_gets_every_event_in_order(stack, fleet_factory, sync):
    # b1 talks the whole time: while the receiver is down, while the gateway is dead, after
    fleet = fleet_factory([chatty("b1", 60, rate=20.0), chatty("b2", 60, rate=20.0)], event_history=1000)
    receiver = stack.receiver()
    receiver.stop()  # down from the start: deliveries queue in the outbox
    port = configure(fleet, [hook(receiver, events=[MSG], retry={"initial": 0.2, "max": 0.5, "attempts": 1000})],
                     outbox_sync=sync)
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


def test_a_reload_changes_the_endpoint_without_dropping_queued_deliveries(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 15)])
    old = stack.receiver()
    old.stop()  # down: its deliveries wait in the outbox
    new = stack.receiver()
    port = configure(fleet, [hook(old, name="app", events=[MSG], retry={"attempts": 1000})])
    service = stack.supervisor(fleet)
    gw = stack.gateway(fleet, port)
    stack.start_bots(service)
    service.tap.wait_for(lambda m: getattr(m, "type", None) == MSG and m.data.text.endswith(" 15"), 20, "15 messages")
    configure(fleet, [hook(new, name="app", events=[MSG], retry={"attempts": 1000})], port=port)
    assert cli(fleet, "reload").returncode == 0
    wait_until(lambda: len(new.accepted_events(MSG)) >= 15, 20, "the queued events at the new url")
    events = new.accepted_events(MSG)
    assert [e["data"]["text"] for e in events] == [f"simulated message {i}" for i in range(1, 16)]
    assert "gateway reloaded" in gw.log()


def test_a_failing_endpoint_is_paused_with_a_notice_and_a_probe_resumes_it(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 5, rate=10.0)])
    state = {"status": 503}
    broken = stack.receiver(lambda n, r: (state["status"], {}, 0))
    watcher = stack.receiver()
    port = configure(fleet, [hook(broken, name="broken", events=[MSG], pause_after=1.0, probe_every=0.5,
                                  retry={"attempts": 1000}),
                             hook(watcher, name="watcher", events=["gateway"])])
    service = stack.supervisor(fleet)
    gw = stack.gateway(fleet, port)
    key = add_key(fleet, "admin")
    stack.start_bots(service)
    auth = {"Authorization": f"Bearer {key}"}

    def endpoint_state():
        eps = httpx.get(gw.base + "/v1/webhooks", headers=auth).json()["endpoints"]
        return next(e for e in eps if e["name"] == "broken")

    wait_until(lambda: endpoint_state()["state"] == "paused", 20, "the endpoint paused")
    notices = wait_until(lambda: [e for e in watcher.accepted_events("gateway")
                                  if e["data"]["event"] == "webhook-paused"], 10, "the pause notice")
    assert notices[0]["data"]["endpoint"] == "broken"
    assert 'botvisor_webhook_paused{endpoint="broken"} 1.0' in httpx.get(gw.base + "/metrics").text
    assert endpoint_state()["pending"] == 5
    state["status"] = 200
    wait_until(lambda: len(broken.accepted_events(MSG)) >= 5, 20, "delivery after the probe")
    assert endpoint_state()["state"] == "active"
    assert [e["data"]["text"] for e in broken.accepted_events(MSG)] == [f"simulated message {i}" for i in range(1, 6)]
    wait_until(lambda: [e for e in watcher.accepted_events("gateway") if e["data"]["event"] == "webhook-resumed"],
               10, "the resume notice")


def test_an_operator_pause_holds_until_resume(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 4, rate=10.0)])
    receiver = stack.receiver()
    port = configure(fleet, [hook(receiver, name="app", events=[MSG])])
    service = stack.supervisor(fleet)
    stack.gateway(fleet, port)
    assert cli(fleet, "webhooks", "pause", "app").returncode == 0
    time.sleep(1.5)  # the running gateway picks the pause up within a second
    stack.start_bots(service)
    service.tap.wait_for(lambda m: getattr(m, "type", None) == MSG and m.data.text.endswith(" 4"), 20, "4 messages")
    time.sleep(0.5)
    assert receiver.accepted() == [], "nothing while paused"
    assert cli(fleet, "webhooks", "resume", "app").returncode == 0
    wait_until(lambda: len(receiver.accepted()) == 4, 15, "the 4 events after resume")


def test_a_gap_the_history_cannot_fill_is_reported(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 40, rate=40.0)], event_history=5)
    receiver = stack.receiver()
    port = configure(fleet, [hook(receiver, events=[MSG, "gateway"])])
    service = stack.supervisor(fleet)
    gw = stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: len(receiver.accepted_events(MSG)) >= 3, 20, "the first events")
    gw.kill()
    service.tap.wait_for(lambda m: getattr(m, "type", None) == MSG and m.data.text.endswith(" 40"), 20, "40 messages")
    gw2 = stack.gateway(fleet, port)
    gap = wait_until(lambda: [e for e in receiver.accepted_events("gateway")
                              if e["data"]["event"] == "gap-unrecovered"], 20, "the gap report")
    assert gap[0]["bot"] == "b1" and "history" in gap[0]["data"]["reason"]
    wait_until(lambda: any(e["data"]["text"].endswith(" 40") for e in receiver.accepted_events(MSG)), 20,
               "the last event")
    assert 'botvisor_gateway_gaps_unrecovered_total{bot="b1"} 1.0' in httpx.get(gw2.base + "/metrics").text
    # at least once: an event in flight when the gateway was SIGKILLed may come twice, with the same id
    unique = {e["id"]: e["data"]["text"] for e in receiver.accepted_events(MSG)}
    texts = list(unique.values())
    assert texts[-5:] == [f"simulated message {i}" for i in range(36, 41)], "what the history held is delivered"
    assert len(set(texts)) == len(texts), "a repeated event carries the same id"


def test_the_gateway_survives_a_supervisor_restart(stack, fleet_factory):
    fleet = fleet_factory([chatty("b1", 3, rate=20.0)])
    receiver = stack.receiver()
    port = configure(fleet, [hook(receiver, events=[MSG, "state"])])
    service = stack.supervisor(fleet)
    gw = stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: len(receiver.accepted_events(MSG)) >= 3, 20, "the first worker's events")
    service.signal(signal.SIGTERM)
    service.wait(20)
    fleet.bots[0]["autostart"] = True
    fleet.write()
    configure(fleet, [hook(receiver, events=[MSG, "state"])], port=port)
    service2 = stack.supervisor(fleet)
    wait_until(lambda: len(receiver.accepted_events(MSG)) >= 6, 30, "the new worker's events")
    assert gw.proc.poll() is None and httpx.get(gw.base + "/readyz").json()["ready"]
    pids = {e["pid"] for e in receiver.accepted_events(MSG)}
    assert len(pids) == 2, "events of the worker before and after the restart"
    assert service2.proc.poll() is None


def test_one_bots_failing_deliveries_do_not_delay_another_bot(stack, fleet_factory):
    fleet = fleet_factory([chatty("stuck", 5), chatty("free", 10)])
    receiver = stack.receiver(lambda n, r: (500, {}, 0) if b'"bot":"stuck"' in r.body else (200, {}, 0))
    port = configure(fleet, [hook(receiver, events=[MSG], retry={"attempts": 1000, "initial": 0.2, "max": 1.0})])
    service = stack.supervisor(fleet)
    stack.gateway(fleet, port)
    stack.start_bots(service)
    wait_until(lambda: len([e for e in receiver.accepted_events(MSG) if e["bot"] == "free"]) >= 10, 20,
               "the free bot's 10 events")
    lags = [r.at - r.json["timestamp"] for r in receiver.accepted()]
    assert max(lags) < 1.0, f"the free bot waited {max(lags):.2f} s behind the stuck one"
    assert not [r for r in receiver.accepted() if r.json["bot"] == "stuck"]
    wait_until(lambda: len([r for r in receiver.requests if r.json["bot"] == "stuck"]) >= 3, 10,
               "the stuck bot's retries")
    assert not [r for r in receiver.accepted() if r.json["bot"] == "stuck"]
