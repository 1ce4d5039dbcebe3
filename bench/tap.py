"""A tap on botvisor's tap endpoint that timestamps hellos and state changes as they arrive.

It reads on its own thread so a hello is stamped when it arrives, not when the bench's main
loop next looks. Only the fields the bench needs are unpacked (plain msgpack, no schema).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import msgpack
import zmq

from protocol.topics import WELCOME


@dataclass(frozen=True, slots=True)
class Seen:
    t: float  # time.monotonic() on arrival
    bot: str
    pid: int
    state: str | None = None
    reason: str | None = None


class TapRecorder:
    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 1_000_000)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 5)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)
        self.lock = threading.Lock()
        self.hellos: list[Seen] = []
        self.states: list[Seen] = []
        self.welcome_at: float | None = None
        #: when each bot's first connection-update arrived (its backend loaded and dialling)
        self.first_dial: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.socket.poll(50):
                continue
            while True:
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = time.monotonic()
                if frames == [WELCOME]:
                    self.welcome_at = self.welcome_at or now
                    continue
                if len(frames) != 2:
                    continue
                kind = frames[0].rsplit(b".", 1)[-1]
                if kind == b"connection-update":
                    bot = frames[0].split(b".")[1].decode()
                    with self.lock:
                        self.first_dial.setdefault(bot, now)
                    continue
                if kind not in (b"hello", b"state"):
                    continue
                body = msgpack.unpackb(frames[1], raw=False)
                seen = Seen(now, body["bot"], body["pid"], body.get("state"), body.get("reason"))
                with self.lock:
                    (self.hellos if kind == b"hello" else self.states).append(seen)

    def hello_pids(self) -> dict[str, int]:
        """The latest hello's pid per bot."""
        with self.lock:
            return {h.bot: h.pid for h in self.hellos}

    def hello_of(self, pid: int) -> Seen | None:
        with self.lock:
            return next((h for h in self.hellos if h.pid == pid), None)

    def state_after(self, bot: str, state: str, since: float) -> Seen | None:
        with self.lock:
            return next((s for s in self.states if s.bot == bot and s.state == state and s.t >= since), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.socket.close(0)
        self.context.term()
