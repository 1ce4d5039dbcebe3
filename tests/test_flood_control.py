"""A busy fleet's supervisor still answers its operator promptly (supervisor/relay.py).

Under a flood every pass of the loop reads a full batch of worker messages (EVENTS_BATCH,
several ms at ~20 µs each); a control request that came meanwhile waited for the whole of it.
The pass looks at the control socket every CONTROL_LOOK messages and stops for a waiting request.
Here the supervisor is real, its events socket fed over inproc (tests/relay_harness.py), so the
test knows how many messages wait.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from protocol.control import Request, decode_reply, encode_request
from supervisor.arbiter import Supervisor
from supervisor.relay import CONTROL_LOOK, EVENTS_BATCH
from tests.relay_harness import Feed, fed_supervisor, left_queued

QUEUED = 300


@pytest.fixture
def supervisor(tmp_path: Path):
    yield from fed_supervisor(tmp_path)


def flood(sup: Supervisor, feed: zmq.Socket, n: int) -> None:
    Feed(sup, feed).heartbeats(n)


def test_a_pass_of_the_flood_stops_for_a_waiting_control_request_and_it_is_answered(supervisor):
    sup, feed = supervisor
    assert QUEUED > EVENTS_BATCH > CONTROL_LOOK
    client = sup.context.socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(sup.config.endpoint("control"))
    try:
        client.send(encode_request(Request("r1", "ping", {})))
        assert sup.control.poll(5000), "the request did not reach the control socket"
        flood(sup, feed, QUEUED)
        sup._on_events()
        handled = QUEUED - left_queued(sup.events)
        assert handled == CONTROL_LOOK, (
            f"the pass read {handled} messages with a request waiting (a full batch is {EVENTS_BATCH})")
        assert sup._events_saturated, "more is queued: the loop must not pause before reading on"
        sup._on_control()
        assert client.poll(5000), "no answer to the request"
        assert decode_reply(client.recv()).ok
    finally:
        client.close(0)


def test_without_a_request_a_pass_reads_a_full_batch(supervisor):
    sup, feed = supervisor
    flood(sup, feed, QUEUED)
    sup._on_events()
    assert QUEUED - left_queued(sup.events) == EVENTS_BATCH
