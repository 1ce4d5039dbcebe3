"""Worker traffic: every message on the events endpoint checked (signature, decode, topic,
seq) and republished on the tap, and the tap's own bookkeeping.

A mixin of the Supervisor (supervisor/arbiter.py), whose loop calls ``_on_events`` when the
events socket has input; its sockets, containers and stats are the Supervisor's.
"""

from __future__ import annotations

import logging
import time

import zmq

from protocol import EventType, ProtocolError, check_topic
from protocol.codec import decode_wire
from protocol.signing import SIGNATURE_BYTES, Verifier
from protocol.topics import split

from .poller import EVENTS, POLLIN, queued
from .sockets import publish_lossy

log = logging.getLogger("botvisor.supervisor")

#: worker messages read per pass; then timers, control requests (a ``status`` under load) and
#: exits get their turn: at ~15 µs a message, 256 is under 4 ms
EVENTS_BATCH = 256
#: within a pass, every this many messages a look whether a control request waits: under a
#: flood a pass is several ms, and an operator's `status` waited for the whole of it (and
#: then for its own handling) before its answer; a look is two syscalls in libzmq
CONTROL_LOOK = 64
#: a quiet fleet's heartbeats are taken a beat group at a time: after a pass that read
#: heartbeats only, when no other message came for QUIET_S, the events socket is left alone
#: for BEAT_HOLD_S while the rest of the group arrives (worker/beats.py: a fleet beats in
#: groups an interval). Each pass, and each wakeup of ZeroMQ's threads, cost far more than the
#: heartbeat it carries: 200 bots at 1 s heartbeats made ~35 passes a second of a heartbeat or
#: two (bench/ISSUE18-notes.md §12). The cost is that the first message after a quiet spell
#: waits up to BEAT_HOLD_S; traffic ends the holds at once, so a busy fleet is never held
#: (interrupt moderation on a network card makes the same trade).
BEAT_HOLD_S = 0.015
QUIET_S = 1.0
#: accepted messages republished together (see _flush_tap), at most this many at a time
TAP_BATCH = 64
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
#: how long an exit waits for the worker's last messages (its error and bye) still in flight
LAST_WORDS_S = 0.25


class Relay:
    """The Supervisor's worker-traffic half (see the module docstring)."""

    def _on_events(self) -> None:
        handle, n, waiting, beats = self._on_worker_message, 0, False, 0
        after_hold = self.poller.released(self.events)  # then the group is in: no second hold
        control = self.control.get
        for n, frames in enumerate(queued(self.events, EVENTS_BATCH), start=1):
            if handle(frames) == "heartbeat":
                beats += 1
            if not n % CONTROL_LOOK and control(EVENTS) & POLLIN:
                waiting = True  # the rest after the request (the loop takes control first)
                break
        self._flush_tap()
        self._events_saturated = n == EVENTS_BATCH or waiting
        self._events_dense = n > 1 and not after_hold
        if not self._events_saturated:  # read until empty: the next poll need not look again
            self.poller.drained(self.events)
        now = time.monotonic()
        if beats < n:
            self._traffic_at = now
        elif n and not (self._events_saturated or after_hold) and now - self._traffic_at >= QUIET_S:
            self.poller.hold(self.events, BEAT_HOLD_S)

    def _expect_traffic(self) -> None:
        """A worker was just started: no hold while it connects and says hello (ZeroMQ attaches
        its connection only when this thread touches the events socket)."""
        self._traffic_at = time.monotonic()
        self.poller.release(self.events)

    def _on_worker_message(self, frames: list[bytes]) -> str | None:
        """Check and take in one worker message; its kind ("event", "heartbeat"...), None if dropped."""
        if len(frames) != 3 or len(frames[2]) != SIGNATURE_BYTES:
            self._reject("frames", f"expected [topic, payload, signature], got {len(frames)} frame(s)")
            return None
        topic, payload, signature = frames
        try:
            _server, bot_id, _rest = split(topic.decode())
        except UnicodeDecodeError:
            self._reject("topic", "topic is not UTF-8")
            return None
        container = self.manager.find(bot_id)
        secret = self.secrets.get(bot_id)
        verifier = self._verifiers.get(bot_id)
        if secret is not None and (verifier is None or verifier.secret is not secret):
            verifier = self._verifiers[bot_id] = Verifier(secret)  # a new worker, a new secret
        if container is None or secret is None or not verifier(topic, payload, signature):
            self._reject("signature", f"message for bot {bot_id!r} does not carry its worker's signature")
            return None
        try:
            message = decode_wire(payload)  # a Struct, read attribute for attribute like the dataclass
            check_topic(topic, message)
        except ProtocolError as exc:
            self._reject("malformed", f"bot {bot_id}: {exc}")
            return None
        if message.server != self.server or not container.accepts(message):
            self.stats["stale"] += 1  # e.g. the last words of a worker already replaced
            return None
        kind = container.on_message(message)
        self._tap_pending.append((topic, payload))
        if len(self._tap_pending) >= TAP_BATCH:
            self._flush_tap()
        if kind == "event":
            if message.type is EventType.ERROR:
                outage = self.outages.observe(bot_id, message.data, time.monotonic())
                if outage is not None:
                    self.notice("error", outage)
        elif kind == "bye":
            self._byes.add(message.pid)
        return kind

    def _await_last_words(self, pid: int, exitcode: int | None) -> None:
        """A worker that exited on purpose sent its error and bye just before; the exit can be
        seen before they are read. Read them first (bounded), so the exit is judged with its reason."""
        deadline = time.monotonic() + LAST_WORDS_S
        if exitcode is not None and exitcode >= 0:  # a signal's victim says nothing
            while pid not in self._byes and (left := deadline - time.monotonic()) > 0:
                if self.events.poll(int(left * 1000) + 1):
                    self._on_events()
        self._byes.discard(pid)

    def _reject(self, kind: str, why: str) -> None:
        self.stats[f"rejected_{kind}"] += 1
        self.stats["rejected"] += 1
        if self.stats["rejected"] <= 10 or self.stats["rejected"] % 1000 == 0:
            log.warning("dropped a message on the events endpoint (%d so far): %s", self.stats["rejected"], why)

    def _to_tap(self, topic: bytes, payload: bytes) -> None:
        self._tap_pending.append((topic, payload))  # after what came before it, in order
        self._flush_tap()

    def _flush_tap(self) -> None:
        """Republish what the pass accepted, back to back: ZeroMQ wakes its I/O thread (a
        syscall) when a pipe goes from empty to non-empty, so sends spread over a pass cost a
        wakeup each, and sends in a row share one. Plain-int flags: ``send_multipart``'s
        ``SNDMORE | flags`` builds an IntFlag per frame, which cost more than the send.

        The tap has XPUB_NODROP: a full tap queue refuses the first frame (EAGAIN); that message
        is counted in tap_dropped and sent again lossy, so the taps that keep up still get it."""
        pending = self._tap_pending
        if pending:
            send = self._tap_send
            for topic, payload in pending:
                try:
                    send(topic, _SNDMORE_NOBLOCK)
                except zmq.Again:
                    self.stats["tap_dropped"] += 1
                    publish_lossy(self.tap, [topic, payload])
                    continue
                send(payload, _NOBLOCK)
            pending.clear()

    def _on_tap_subscriptions(self) -> None:
        for _frames in queued(self.tap):
            pass  # a tap (un)subscribed; XPUB hands us the notice, there is nothing to do with it
