"""The worker bus under backpressure, run in a fresh interpreter by tests/test_worker_bus.py.

A fresh process because the pytest process may hold neonize's Go runtime by then (its signals
interrupt libzmq's system calls); this one holds nothing but the bus and a reader. Prints one
JSON object with what it measured.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import zmq

from protocol import BotStatus
from protocol.events import MessageUpsert
from worker import bus as bus_module
from worker.bus import EventBus


def _message(i: int) -> MessageUpsert:
    # large enough that a few fill the kernel's socket buffers as well as the queues
    return MessageUpsert(id=f"m{i}", chat="c", sender="s", timestamp=0.0, from_me=False, text="x" * 200_000)


def main(scenario: str) -> dict[str, object]:
    bus_module.SEND_HWM = 4
    bus_module.SEND_WAIT_S = 0.3
    context, reader_context = zmq.Context(), zmq.Context()
    sub = reader_context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 4)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{Path(tempfile.mkdtemp(prefix='bus-')) / 'events.sock'}"
    sub.bind(endpoint)
    bus = EventBus(context, endpoint, server="srv", bot="b1", secret=b"k" * 32, backend="simulated",
                   heartbeat_interval=1.0)
    bus.socket.setsockopt(zmq.LINGER, 0)
    try:
        # a bound SUB attaches a new peer (and sends it the subscription) only when it is used
        deadline = time.monotonic() + 10
        while not bus.wait_for_subscriber(0.02):
            sub.poll(10)
            if time.monotonic() > deadline:
                return {"error": "the reader's subscription never reached the bus"}
        return full_queue(bus) if scenario == "full" else slow_reader(bus, sub)
    finally:
        reader_context.destroy(linger=0)
        context.destroy(linger=0)


def full_queue(bus: EventBus) -> dict[str, object]:
    for i in range(500):
        cpu, wall = time.thread_time(), time.monotonic()
        bus.event(_message(i))
        if bus.dropped:
            break
    else:
        return {"error": "500 large messages fitted in queues of four: nothing was ever full"}
    waited, spent = time.monotonic() - wall, time.thread_time() - cpu
    dropped_after_event = bus.dropped
    bus.heartbeat(BotStatus.ONLINE, 0)  # dropped too here, and counted
    return {"waited": waited, "spent": spent, "dropped_after_event": dropped_after_event,
            "dropped_after_heartbeat": bus.dropped}


def slow_reader(bus: EventBus, sub: zmq.Socket) -> dict[str, object]:
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
    return {"dropped": bus.dropped, "received": received}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
