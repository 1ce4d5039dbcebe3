"""A command to a bot whose worker is alive waits for its command socket (issue 14, defect 7).

Real ZeroMQ sockets, no supervisor process: the commands ROUTER as the supervisor binds it, and
a worker's DEALER that connects only after the call was made (as it does right after hello).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import zmq

from protocol import ContainerState
from protocol.control import decode_request, encode_reply, ok
from supervisor.calls import WorkerCalls
from supervisor.timers import Timers


class Harness:
    def __init__(self, command_timeout: float = 2.0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bv-calls-", dir="/tmp"))
        self.endpoint = f"ipc://{self.dir / 'commands.sock'}"
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.endpoint)
        self.process = SimpleNamespace(exitcode=None)
        self.container = SimpleNamespace(bot=SimpleNamespace(id="b1"), state=ContainerState.RUNNING,
                                         process=self.process)
        self.timers = Timers()
        self.supervisor = SimpleNamespace(
            manager=SimpleNamespace(find=lambda bot_id: self.container if bot_id == "b1" else None),
            commands=self.router, timers=self.timers,
            config=SimpleNamespace(supervisor=SimpleNamespace(command_timeout=command_timeout)))
        self.calls = WorkerCalls(self.supervisor)
        self.replies: list = []
        self.dealer: zmq.Socket | None = None

    def connect_worker(self) -> None:
        self.dealer = self.context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.IDENTITY, b"b1")
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(self.endpoint)

    def spin(self, until, timeout: float) -> None:
        """Run the supervisor's side (timers, replies) and the worker's (answer pings) until done."""
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.timers.run_due()
            if self.router.poll(5):
                self.calls.on_replies()
            if self.dealer is not None and self.dealer.poll(0):
                request = decode_request(self.dealer.recv())
                self.dealer.send(encode_reply(ok(request.id, {"pong": request.command})))

    def close(self) -> None:
        for sock in (self.router, self.dealer):
            if sock is not None:
                sock.close(0)
        self.context.term()


def test_a_command_sent_before_the_workers_socket_connects_waits_for_it():
    h = Harness(command_timeout=3.0)
    try:
        h.calls.call("b1", "ping", {}, h.replies.append)
        h.spin(lambda: bool(h.replies), 0.2)  # the worker has not connected yet
        assert h.replies == [], h.replies  # no "not connected": the call waits
        h.connect_worker()
        h.spin(lambda: bool(h.replies), 3.0)
        assert len(h.replies) == 1 and h.replies[0].ok, h.replies
        assert h.replies[0].result == {"pong": "ping"}
    finally:
        h.close()


def test_a_worker_that_never_connects_is_reported_within_the_command_timeout():
    h = Harness(command_timeout=0.3)
    try:
        started = time.monotonic()
        h.calls.call("b1", "ping", {}, h.replies.append)
        h.spin(lambda: bool(h.replies), 3.0)
        took = time.monotonic() - started
        assert len(h.replies) == 1 and not h.replies[0].ok
        assert "not connected" in h.replies[0].error
        assert 0.2 <= took < 1.5, took
    finally:
        h.close()


def test_a_dead_worker_or_a_stopped_bot_is_reported_at_once():
    h = Harness(command_timeout=5.0)
    try:
        h.process.exitcode = -9  # the worker died: nothing will ever connect
        h.calls.call("b1", "ping", {}, h.replies.append)
        assert len(h.replies) == 1 and "not connected" in h.replies[0].error
        h.process.exitcode = None
        h.calls.call("b1", "ping", {}, h.replies.append)  # waiting for the socket ...
        h.container.state = ContainerState.STOPPED  # ... when the bot is stopped
        h.spin(lambda: len(h.replies) == 2, 1.0)
        assert len(h.replies) == 2 and "not running" in h.replies[1].error
    finally:
        h.close()
