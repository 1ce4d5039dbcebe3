"""A busy fleet's supervisor still answers its operator promptly (supervisor/relay.py).

Under a flood every pass of the loop reads a full batch of worker messages (EVENTS_BATCH,
several ms at ~20 µs each); a control request that came meanwhile waited for the whole of it.
The pass looks at the control socket every CONTROL_LOOK messages and stops for a waiting request.
Here the supervisor is real (its sockets bound, one container made to look running), its events
socket fed over inproc, where a sent message is queued at once, so the test knows how many wait.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from protocol import BotStatus, ContainerState, Heartbeat, encode
from protocol.config import load_config
from protocol.control import Request, decode_reply, encode_request
from protocol.signing import new_secret, sign
from supervisor.arbiter import Supervisor
from supervisor.relay import CONTROL_LOOK, EVENTS_BATCH

QUEUED = 300


class RunningProcess:
    """Stands for a running worker: the relay needs only its pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel = -1

    def resources(self) -> tuple[int, float]:
        return 0, 0.0


@pytest.fixture
def supervisor(tmp_path: Path):
    (tmp_path / "botvisor.toml").write_text(
        f'[supervisor]\nserver_name = "flood"\nauth_dir = "{tmp_path / "auth"}"\nrun_dir = "{tmp_path / "run"}"\n'
        '[[bots]]\nid = "b1"\nbackend = "simulated"\n')
    sup = Supervisor(load_config(tmp_path / "botvisor.toml"))
    sup._prepare_run_dir()
    sup._bind()
    container = sup.manager.get_bot_container("b1")
    container.process, container.state = RunningProcess(4242), ContainerState.RUNNING
    sup.secrets["b1"] = new_secret()
    feed = sup.context.socket(zmq.XPUB)  # it sees the subscription: nothing sent before it is dropped
    sup.events.close(0)  # an inproc SUB in its place: what is sent is queued when send returns
    sup.events = sup.context.socket(zmq.SUB)
    sup.events.setsockopt(zmq.SUBSCRIBE, b"")
    sup.events.setsockopt(zmq.RCVHWM, 0)
    sup.events.bind("inproc://events")
    feed.setsockopt(zmq.SNDHWM, 0)
    feed.connect("inproc://events")
    deadline = time.monotonic() + 5  # the SUB subscribes a new pipe when its thread touches it
    while not feed.poll(10):
        sup.events.getsockopt(zmq.EVENTS)
        assert time.monotonic() < deadline, "no subscription from the events socket"
    assert feed.recv() == b"\x01"
    try:
        yield sup, feed
    finally:
        feed.close(0)
        container.process = None  # nothing to kill
        sup._close()


def flood(sup: Supervisor, feed: zmq.Socket, n: int) -> None:
    for seq in range(n):
        topic, payload = encode(Heartbeat("flood", "b1", 4242, seq, time.time(), BotStatus.ONLINE, 0, 0))
        feed.send_multipart([topic, payload, sign(sup.secrets["b1"], topic, payload)])


def left_queued(sock: zmq.Socket) -> int:
    n = 0
    while True:
        try:
            sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return n
        n += 1


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
