"""The worker's bus under backpressure: a full queue is waited on without spinning, then
counted as dropped; nothing is lost while the supervisor keeps reading."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from protocol import BotStatus
from protocol.events import MessageUpsert
from worker import bus as bus_module
from worker.bus import EventBus


@pytest.fixture
def wire(tmp_path, monkeypatch):
    monkeypatch.setattr(bus_module, "SEND_HWM", 4)
    monkeypatch.setattr(bus_module, "SEND_WAIT_S", 0.3)
    context, reader_context = zmq.Context(), zmq.Context()
    sub = reader_context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 4)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path / 'events.sock'}"
    sub.bind(endpoint)
    bus = EventBus(context, endpoint, server="srv", bot="b1", secret=b"k" * 32, backend="simulated",
                   heartbeat_interval=1.0)
    bus.socket.setsockopt(zmq.LINGER, 0)
    # a bound SUB attaches a new peer (and sends it the subscription) only when it is used
    deadline = time.monotonic() + 10
    while not bus.wait_for_subscriber(0.02):
        sub.poll(10)
        assert time.monotonic() < deadline, "the reader's subscription never reached the bus"
    yield bus, sub
    # the reader first, then the worker's side, each context with its sockets at linger 0
    reader_context.destroy(linger=0)
    context.destroy(linger=0)


def _message(i: int) -> MessageUpsert:
    # large enough that a few fill the kernel's socket buffers as well as the queues
    return MessageUpsert(id=f"m{i}", chat="c", sender="s", timestamp=0.0, from_me=False, text="x" * 200_000)


def test_a_full_queue_is_waited_on_without_spinning_then_counted_as_dropped(wire):
    bus, _sub = wire
    for i in range(500):
        cpu, wall = time.thread_time(), time.monotonic()
        bus.event(_message(i))
        if bus.dropped:
            break
    else:
        pytest.fail("500 large messages fitted in queues of four: nothing was ever full")
    waited, spent = time.monotonic() - wall, time.thread_time() - cpu
    assert 0.25 <= waited < 2.0, waited  # SEND_WAIT_S, bounded
    assert spent < waited / 2, f"waiting for room burned {spent:.2f} s of CPU in {waited:.2f} s"
    assert bus.dropped == 1
    bus.heartbeat(BotStatus.ONLINE, 0)  # the heartbeat says so (it is dropped too here, and counted)
    assert bus.dropped == 2


def test_nothing_is_lost_while_the_reader_keeps_up_slowly(wire):
    bus, sub = wire
    received: list[int] = []

    def read() -> None:
        deadline = time.monotonic() + 20
        while len(received) < 60 and time.monotonic() < deadline:
            if sub.poll(100):
                frames = sub.recv_multipart()
                received.append(msgpack.unpackb(frames[1])["seq"])
                time.sleep(0.005)  # a slow supervisor: the worker's queue stays full

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(60):
        bus.event(_message(i))
    reader.join(25)
    assert bus.dropped == 0
    assert received == list(range(60))
