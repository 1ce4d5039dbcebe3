"""One worker run standalone (``python -m worker``) with the test in the supervisor's seat.

The test binds the events SUB and the commands ROUTER a worker connects to, so it can send
worker commands and read events without a supervisor in between. Messages are decoded, not
verified (a standalone worker signs with a throwaway key). The process is killed on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from typing import Any, Callable

import zmq

from protocol import Message, decode
from protocol.control import Request, decode_reply, encode_request

from .harness import REPO, Fleet


class StandaloneWorker:
    def __init__(self, fleet: Fleet, bot_id: str) -> None:
        self.fleet, self.bot_id = fleet, bot_id
        self.seen: list[Message] = []

    def __enter__(self) -> StandaloneWorker:
        self.fleet.run_dir.mkdir(mode=0o700, exist_ok=True)
        self.context = zmq.Context()
        self.events = self.context.socket(zmq.SUB)
        self.events.setsockopt(zmq.SUBSCRIBE, b"")
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(self.fleet.endpoint("events"))
        self.commands = self.context.socket(zmq.ROUTER)
        self.commands.setsockopt(zmq.LINGER, 0)
        self.commands.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.commands.bind(self.fleet.endpoint("commands"))
        self.log = open(self.fleet.root / f"worker-{self.bot_id}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "worker", "-c", str(self.fleet.config_path),
                                      "--bot", self.bot_id, "--subscribe-timeout", "5"],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.log.close()
        self.events.close(0)
        self.commands.close(0)
        self.context.term()

    def read(self, timeout: float) -> Message | None:
        if not self.events.poll(int(timeout * 1000)):
            return None
        frames = self.events.recv_multipart()
        message = decode(frames[1])
        self.seen.append(message)
        return message

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0, what: str = "message") -> Message:
        for message in self.seen:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.read(min(0.2, max(0.0, deadline - time.monotonic())))
            if message is not None and predicate(message):
                return message
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode} before {what}")
        raise AssertionError(f"no {what} within {timeout} s; last: {self.seen[-5:]}")

    def call(self, command: str, args: dict[str, Any], ok: bool = True, timeout: float = 10.0) -> Any:
        """Run a worker command; its result (``ok``) or its error text (``ok=False``)."""
        request_id = uuid.uuid4().hex
        self.commands.send_multipart([self.bot_id.encode(), encode_request(Request(request_id, command, args))])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.commands.poll(100):
                _identity, payload = self.commands.recv_multipart()
                reply = decode_reply(payload)
                if reply.id == request_id:
                    assert reply.ok is ok, f"{command}: expected ok={ok}, got {reply}"
                    return reply.result if ok else reply.error
            self.read(0)
        raise AssertionError(f"no reply to {command} within {timeout} s")
