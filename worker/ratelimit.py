"""The per-bot rate limit: a token bucket, one token per message sent.

WhatsApp bans numbers that send fast (temporary ban 101/104), so every message a bot sends passes
``messages_per_minute``. A message over the limit is never dropped: it waits in the durable
outbox (worker/outbox.py), in order, and the worker's loop sends it when its token comes.

Pure: every method takes the monotonic time ``now``; nothing here reads a clock or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
