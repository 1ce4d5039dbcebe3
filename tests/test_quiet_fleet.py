"""A quiet fleet's heartbeats are taken a beat group at a time (supervisor/relay.py, BEAT_HOLD_S).

After a pass that read heartbeats only, with no other worker message for QUIET_S, the loop
leaves the events socket alone for BEAT_HOLD_S, so the rest of the beat group is read in one
pass instead of a wakeup each. What must stay true: nothing is lost, a held message waits at
most the hold, control requests and other fds are served during it, any other traffic ends
the holding, and a new worker is never held (its connection waits for the loop's touch).
Real supervisor, events fed over inproc (tests/relay_harness.py).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import zmq

from protocol.control import Request, decode_reply, encode_request
from supervisor.poller import Poller
from supervisor.relay import BEAT_HOLD_S, QUIET_S
from tests.relay_harness import Feed, RunningProcess, fed_supervisor, left_queued


@pytest.fixture
def fed(tmp_path: Path):
    for sup, feed in fed_supervisor(tmp_path):
        sup._traffic_at = time.monotonic() - QUIET_S - 1  # the fleet has been quiet
        yield sup, Feed(sup, feed)


def passes_of_events(sup) -> list[int]:
    """Counts the messages each events pass reads (wrapping the loop's handler)."""
    counts: list[int] = []
    real = sup._on_worker_message

    def counting(frames):
        counts[-1] += 1
        return real(frames)

    def on_events():
        counts.append(0)
        real_on_events()

    real_on_events = sup._on_events
    sup._on_worker_message = counting
    sup._handlers[sup.events] = on_events
    return counts


def held_after_a_lone_heartbeat(sup, feed) -> list[int]:
    """The loop has read a lone heartbeat of a quiet fleet and holds the events socket."""
    passes = passes_of_events(sup)
    feed.heartbeats(1)
    loop_until(sup, lambda: passes)
    assert passes == [1] and sup.poller.held(sup.events), "a lone heartbeat in a quiet fleet holds the events socket"
    return passes


def loop_until(sup, condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the loop never got there"
        sup._loop_once()


def test_a_beat_group_is_read_in_one_pass_after_its_first_heartbeat_nothing_lost(fed):
    sup, feed = fed
    passes = held_after_a_lone_heartbeat(sup, feed)
    held_at = time.monotonic()
    feed.heartbeats(19)  # the rest of the group, while held
    sup._loop_once()
    assert passes == [1] or time.monotonic() - held_at >= BEAT_HOLD_S, "read during the hold"
    loop_until(sup, lambda: len(passes) == 2)
    assert time.monotonic() - held_at >= BEAT_HOLD_S * 0.9
    assert passes == [1, 19], f"the group's rest in one pass, got passes of {passes}"
    assert not sup.poller.held(sup.events), "the group is in: the pass after a hold does not hold again"
    assert sup.manager.get_bot_container("b1").events_lost == 0
    assert sup.stats["rejected"] == 0 and left_queued(sup.events) == 0


def test_a_held_socket_waits_at_most_the_hold_and_the_loop_sleeps_meanwhile(fed):
    sup, feed = fed
    passes = held_after_a_lone_heartbeat(sup, feed)
    feed.heartbeats(5)
    begin = time.monotonic()
    loop_until(sup, lambda: len(passes) == 2)
    waited = time.monotonic() - begin
    assert waited < BEAT_HOLD_S + 0.5, f"held {waited * 1000:.0f} ms, the hold is {BEAT_HOLD_S * 1000:.0f} ms"
    assert passes == [1, 5]


def test_any_other_message_ends_the_holding_for_a_quiet_spell(fed):
    sup, feed = fed
    passes = passes_of_events(sup)
    feed.chat_message()
    loop_until(sup, lambda: passes)
    assert not sup.poller.held(sup.events), "a chat message is traffic: no hold"
    feed.heartbeats(1)
    loop_until(sup, lambda: len(passes) == 2)
    assert not sup.poller.held(sup.events), f"heartbeats within {QUIET_S} s of traffic are read as they come"
    feed.heartbeats(1)
    begin = time.monotonic()
    loop_until(sup, lambda: len(passes) == 3)
    assert time.monotonic() - begin < BEAT_HOLD_S, "read at once, not after a hold"


def test_a_control_request_is_answered_during_a_hold(fed):
    sup, feed = fed
    passes = held_after_a_lone_heartbeat(sup, feed)
    feed.heartbeats(3)
    client = sup.context.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(sup.config.endpoint("control"))
    try:
        client.send(encode_request(Request("r1", "ping", {})))
        assert sup.control.poll(5000)
        sup._loop_once()
        assert passes == [1] and sup.poller.held(sup.events), "the heartbeats still wait for the hold's end"
        assert client.poll(5000), "the pass during the hold did not answer the request"
        assert decode_reply(client.recv()).ok
    finally:
        client.close(0)
    loop_until(sup, lambda: len(passes) == 2)
    assert passes == [1, 3]


def test_a_new_worker_ends_the_hold_so_its_hello_is_not_held(fed):
    sup, feed = fed
    passes = held_after_a_lone_heartbeat(sup, feed)
    r, w = os.pipe()
    container = sup.manager.get_bot_container("b1")
    pretend = container.process
    try:
        container.process = RunningProcess(pretend.pid, sentinel=r)
        sup.watch(container)  # what the runtime does for every worker it spawns
        assert not sup.poller.held(sup.events)
        feed.heartbeats(1)
        begin = time.monotonic()
        loop_until(sup, lambda: len(passes) == 2)
        assert time.monotonic() - begin < BEAT_HOLD_S
        sup.unwatch(container)
    finally:
        container.process = pretend
        os.close(r)
        os.close(w)


def test_the_poller_serves_other_fds_during_a_hold_and_looks_again_after_it():
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    a, b = socket.socketpair()
    poller = Poller()
    try:
        pull.bind("inproc://held")
        push.connect("inproc://held")
        poller.add_socket(pull)
        poller.add_fd(a.fileno())
        push.send(b"x")
        poller.hold(pull, 0.3)
        b.send(b"!")
        begin = time.monotonic()
        ready = poller.poll(5.0)
        assert ready.fds == [a.fileno()] and ready.sockets == [], "the fd at once, the held socket not"
        assert time.monotonic() - begin < 0.25
        a.recv(1)
        ready = poller.poll(5.0)  # nothing but the held socket: the wait ends with its hold
        elapsed = time.monotonic() - begin
        if not ready.sockets:  # the hold's end was the wakeup: the next poll looks at it
            ready = poller.poll(0)
        assert ready.sockets == [pull] and 0.25 < elapsed < 2.0, f"after {elapsed:.2f} s"
        assert poller.released(pull) or elapsed >= 0.3
        assert pull.recv(zmq.NOBLOCK) == b"x"
    finally:
        poller.close()
        a.close()
        b.close()
        pull.close(0)
        push.close(0)
        ctx.term()
