"""A real Supervisor, its sockets bound, one container made to look running, and its events
socket fed over inproc, where a sent message is queued when send returns: so a test knows what
waits for the loop (tests/test_flood_control.py, tests/test_quiet_fleet.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import zmq

from protocol import BotStatus, ContainerState, Event, EventType, Heartbeat, MessageUpsert, encode
from protocol.config import load_config
from protocol.signing import new_secret, sign
from supervisor.arbiter import Supervisor
from supervisor.poller import Poller

PID = 4242


class RunningProcess:
    """Stands for a running worker: the relay needs only its pid (and watch() a sentinel)."""

    def __init__(self, pid: int, sentinel: int = -1) -> None:
        self.pid = pid
        self.sentinel = sentinel

    def resources(self) -> tuple[int, float]:
        return 0, 0.0


def fed_supervisor(tmp_path: Path) -> Iterator[tuple[Supervisor, zmq.Socket]]:
    """Yields (supervisor, feed): what is sent on ``feed`` waits on the supervisor's events socket."""
    (tmp_path / "botvisor.toml").write_text(
        f'[supervisor]\nserver_name = "flood"\nauth_dir = "{tmp_path / "auth"}"\nrun_dir = "{tmp_path / "run"}"\n'
        '[[bots]]\nid = "b1"\nbackend = "simulated"\n')
    sup = Supervisor(load_config(tmp_path / "botvisor.toml"))
    sup._prepare_run_dir()
    sup._bind()
    container = sup.manager.get_bot_container("b1")
    container.process, container.state = RunningProcess(PID), ContainerState.RUNNING
    sup.secrets["b1"] = new_secret()
    feed = sup.context.socket(zmq.XPUB)  # it sees the subscription: nothing sent before it is dropped
    sup.events.close(0)  # an inproc SUB in its place: what is sent is queued when send returns
    sup.events = sup.context.socket(zmq.SUB)
    sup.events.setsockopt(zmq.SUBSCRIBE, b"")
    sup.events.setsockopt(zmq.RCVHWM, 0)
    sup.events.bind("inproc://events")
    sup._handlers[sup.events] = sup._on_events
    sup.poller.close()  # the loop's poller, over the new socket, in the loop's order
    sup.poller = Poller()
    for sock in (sup.control, sup.commands, sup.tap, sup.events):
        sup.poller.add_socket(sock)
    sup.poller.add_fd(sup._signal_fd)
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


class Feed:
    """Signed messages of bot b1's worker, numbered in order, sent on ``feed``."""

    def __init__(self, sup: Supervisor, feed: zmq.Socket) -> None:
        self.sup, self.feed, self.seq = sup, feed, 0

    def send(self, message: object) -> None:
        topic, payload = encode(message)
        self.feed.send_multipart([topic, payload, sign(self.sup.secrets["b1"], topic, payload)])
        self.seq += 1

    def heartbeats(self, n: int) -> None:
        for _ in range(n):
            self.send(Heartbeat("flood", "b1", PID, self.seq, time.time(), BotStatus.ONLINE, 0, 0))

    def chat_message(self) -> None:
        data = MessageUpsert(id=f"m{self.seq}", chat="1@s.whatsapp.net", sender="1@s.whatsapp.net",
                             timestamp=time.time(), from_me=False, text="hi")
        self.send(Event("flood", "b1", PID, self.seq, time.time(), EventType.MESSAGE_UPSERT, data))


def left_queued(sock: zmq.Socket) -> int:
    n = 0
    while True:
        try:
            sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return n
        n += 1
