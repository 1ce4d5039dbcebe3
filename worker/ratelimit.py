"""Outgoing messages per bot, rate limited: a token bucket and the queue in front of it.

WhatsApp bans numbers that send fast (temporary ban 101/104), so every text a bot sends passes
``messages_per_minute``. A message over the limit is never dropped: it waits in the outbox,
in order, and the worker's loop sends it when its token comes (``Outbox.flush``). The reply to
the ``send`` command says which happened: ``sent`` with the message, or ``queued`` with its
place in the line and the expected delay.

Pure: every method takes the monotonic time ``now``; nothing here reads a clock or sleeps.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import CommandError

log = logging.getLogger("botvisor.worker.outbox")

#: messages that may wait at once; past this the command is refused (the caller can retry)
MAX_QUEUED = 1000


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per message."""

    rate: float
    burst: float = 1.0
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {self.rate}, {self.burst}")
        self.tokens = self.burst

    @classmethod
    def per_minute(cls, messages_per_minute: float, burst: float = 1.0) -> TokenBucket:
        return cls(rate=messages_per_minute / 60.0, burst=burst)

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def wait(self, now: float, n: int = 1) -> float:
        """Seconds from ``now`` until ``n`` tokens are there (0 if they are)."""
        self._refill(now)
        missing = n - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        if self.wait(now) > 0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class _Pending:
    number: int
    to: str
    text: str
    queued_at: float


class Outbox:
    """Texts on their way out, in order, no faster than the bucket allows.

    ``send(to, text)`` is the backend's send; ``ready()`` says whether the bot can send now
    (connected). A message that cannot go at once (no token, or others waiting before it)
    is queued; ``flush`` sends what is due and ``on_error(pending, exc)`` hears about a queued
    message whose send failed, so nothing disappears without a trace.
    """

    def __init__(self, bucket: TokenBucket, send: Callable[[str, str], dict[str, Any]],
                 ready: Callable[[], bool], on_error: Callable[[int, str, Exception], None],
                 max_queued: int = MAX_QUEUED) -> None:
        self.bucket, self._send, self._ready, self._on_error = bucket, send, ready, on_error
        self.max_queued = max_queued
        self.queue: deque[_Pending] = deque()
        self._numbers = 0
        self.sent = 0

    def submit(self, to: str, text: str, now: float) -> dict[str, Any]:
        """Send now if the limit allows and nothing waits before it; else queue it."""
        if not self.queue and self.bucket.wait(now) == 0:
            result = self._send(to, text)  # errors (offline, bad jid) go back to the caller
            self.bucket.take(now)
            self.sent += 1
            return {"sent": True, "queued": False, **result}
        if len(self.queue) >= self.max_queued:
            raise CommandError(f"{len(self.queue)} messages already wait for the rate limit; try again later")
        self._numbers += 1
        self.queue.append(_Pending(self._numbers, to, text, now))
        position = len(self.queue)
        return {"sent": False, "queued": True, "queue_id": self._numbers, "position": position, "to": to,
                "expected_delay": round(self.expected_delay(now, position), 3)}

    def expected_delay(self, now: float, position: int) -> float:
        """Seconds until the message at ``position`` (1-based) goes, if the bot stays connected."""
        return self.bucket.wait(now, position)

    def flush(self, now: float) -> float | None:
        """Send every queued message that is due; return when the next one is (None: nothing waits)."""
        while self.queue and self._ready():
            if not self.bucket.take(now):
                return now + self.bucket.wait(now)
            pending = self.queue.popleft()
            try:
                self._send(pending.to, pending.text)
                self.sent += 1
                log.info("sent queued message %d to %s after %.1f s", pending.number, pending.to, now - pending.queued_at)
            except Exception as exc:  # reported, not retried: a resend could duplicate the message
                self._on_error(pending.number, pending.to, exc)
        return None  # empty, or waiting for the connection: the loop calls again on its next turn
