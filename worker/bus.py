"""The worker's side of the event bus: numbered, signed messages to the supervisor.

The socket is an XPUB connected to the supervisor's SUB. An XPUB sees its subscribers'
subscriptions, which solves the PUB/SUB slow-joiner problem: the worker waits until the
supervisor's subscription has arrived before sending hello, so the first events are never
dropped on a connection that is not ready yet. XPUB_NODROP turns a full queue into an
EAGAIN the worker waits on (backpressure) instead of a silent drop; what still cannot be
sent after SEND_WAIT_S is counted, and its ``seq`` is spent anyway so the supervisor sees
the gap.
"""

from __future__ import annotations

import logging
import os
import time

import zmq

from protocol import (
    MAX_PAYLOAD_BYTES,
    BotStatus,
    Bye,
    Event,
    EventData,
    Heartbeat,
    Hello,
    encode,
)
from protocol.events import EVENT_OF_DATA
from protocol.messages import Message
from protocol.signing import sign

log = logging.getLogger("botvisor.worker.bus")

#: queued messages per worker before send() has to wait for the supervisor
SEND_HWM = 100_000
#: how long one send may wait for room before the message is counted as dropped
SEND_WAIT_S = 1.0
#: the first pause between two tries while the queue is full, doubled up to the second
FULL_QUEUE_PAUSE_S = 0.001
MAX_FULL_QUEUE_PAUSE_S = 0.064
#: send flags as plain ints: or-ing zmq's Flag members builds a new enum member per frame
_MORE = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)


class EventBus:
    def __init__(self, context: zmq.Context, endpoint: str, *, server: str, bot: str, secret: bytes,
                 backend: str, heartbeat_interval: float) -> None:
        self.server, self.bot, self.secret = server, bot, secret
        self.backend, self.heartbeat_interval = backend, heartbeat_interval
        self.pid = os.getpid()
        self.seq = 0
        self.dropped = 0
        self.socket = context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.setsockopt(zmq.LINGER, 2000)
        self.socket.connect(endpoint)

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block until the supervisor has subscribed (True) or ``timeout`` passed (False)."""
        if self.socket.poll(int(timeout * 1000), zmq.POLLIN):
            self.socket.recv()  # b"\x01" + prefix: the subscription itself
            return True
        log.warning("no subscriber on the events endpoint after %.1f s; sending anyway", timeout)
        return False

    def _next(self) -> tuple[int, float]:
        seq = self.seq
        self.seq += 1
        return seq, time.time()

    def publish(self, message: Message) -> bool:
        topic, payload = encode(message)
        if len(payload) > MAX_PAYLOAD_BYTES:
            log.error("dropped a %s of %d bytes: over the %d-byte limit", type(message).__name__, len(payload),
                      MAX_PAYLOAD_BYTES)
            self.dropped += 1  # its seq is spent: the supervisor counts the gap
            return False
        signature = sign(self.secret, topic, payload)
        send = self.socket.send
        deadline, pause = time.monotonic() + SEND_WAIT_S, FULL_QUEUE_PAUSE_S
        while True:
            try:
                # three frames, as send_multipart sends them: only the first can find the queue
                # full (ZeroMQ counts whole messages against the high-water mark)
                send(topic, _MORE)
                send(payload, _MORE)
                send(signature, _LAST)
                return True
            except zmq.Again:
                pass
            # The queue is full. An XPUB reports POLLOUT as soon as one message fits, so waiting
            # on it would retry at the queue's edge; sleeping yields the CPU to whoever drains
            # the queue, and growing pauses keep many full workers from waking every millisecond.
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(pause, left))
            pause = min(2 * pause, MAX_FULL_QUEUE_PAUSE_S)
        self.dropped += 1
        return False

    def hello(self, version: str) -> None:
        seq, ts = self._next()
        self.publish(Hello(self.server, self.bot, self.pid, seq, ts, self.backend, self.heartbeat_interval, version))

    def heartbeat(self, status: BotStatus, connection_attempts: int) -> None:
        seq, ts = self._next()
        self.publish(Heartbeat(self.server, self.bot, self.pid, seq, ts, status, connection_attempts, self.dropped))

    def event(self, data: EventData) -> None:
        seq, ts = self._next()
        self.publish(Event(self.server, self.bot, self.pid, seq, ts, EVENT_OF_DATA[type(data)], data))

    def bye(self, reason: str, exit_code: int) -> None:
        seq, ts = self._next()
        self.publish(Bye(self.server, self.bot, self.pid, seq, ts, reason, exit_code))

    def drain_subscriptions(self) -> None:
        """Read (and ignore) subscription changes so they do not pile up."""
        while True:
            try:
                self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def close(self) -> None:
        self.socket.close()
