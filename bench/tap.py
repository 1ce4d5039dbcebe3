"""Taps on botvisor's tap endpoint for the benches, read on their own thread.

``TapReader`` is the loop every bench tap shares: a SUB socket on the endpoint, read until
``close()``, each multipart message handed to ``on_frames`` as it arrives (stamped then, not
when the bench's main loop next looks). ``TapRecorder`` timestamps hellos and state changes;
it unpacks only the fields the bench needs (plain msgpack, no schema).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import msgpack
import zmq

from protocol.topics import WELCOME


class TapReader(threading.Thread):
    """A daemon thread reading a tap until ``close()``; subclasses handle ``on_frames``.

    ``hwm``: messages libzmq queues for this reader (0: no limit); ``reconnect_ms``: how soon it
    dials again after the supervisor went away (None: libzmq's default); ``poll_ms``: how often
    it looks at ``stopping``.
    """

    def __init__(self, endpoint: str, *, name: str, hwm: int, reconnect_ms: int | None = None,
                 poll_ms: int = 50) -> None:
        super().__init__(name=name, daemon=True)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        if reconnect_ms is not None:
            self.socket.setsockopt(zmq.RECONNECT_IVL, reconnect_ms)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(endpoint)
        self.poll_ms = poll_ms
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            if not self.socket.poll(self.poll_ms):
                continue
            while True:  # everything already queued, then poll again
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_frames(frames)

    def on_frames(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stopping.set()
        self.join(2)
        self.socket.close(0)
        self.context.term()


@dataclass(frozen=True, slots=True)
class Seen:
    t: float  # time.monotonic() on arrival
    bot: str
    pid: int
    state: str | None = None
    reason: str | None = None


class TapRecorder(TapReader):
    """Hellos and state changes with their arrival time, and each bot's first dial; reading
    from construction on."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint, name="bench-tap", hwm=1_000_000, reconnect_ms=5)
        self.hellos: list[Seen] = []
        self.states: list[Seen] = []
        self.welcome_at: float | None = None
        #: when each bot's first connection-update arrived (its backend loaded and dialling)
        self.first_dial: dict[str, float] = {}
        self.start()

    def on_frames(self, frames: list[bytes]) -> None:
        now = time.monotonic()
        if frames == [WELCOME]:
            self.welcome_at = self.welcome_at or now
            return
        if len(frames) != 2:
            return
        kind = frames[0].rsplit(b".", 1)[-1]
        if kind == b"connection-update":
            bot = frames[0].split(b".")[1].decode()
            with self.lock:
                self.first_dial.setdefault(bot, now)
            return
        if kind not in (b"hello", b"state"):
            return
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
