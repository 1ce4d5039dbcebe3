"""The backoff curve and its settings, shared by both sides of the bus.

The supervisor waits on this curve between restarts of a worker (supervisor/restart.py states
the whole restart policy); a worker waits on the same curve between its own reconnection
attempts before it gives up and exits. Pure functions: time and randomness are passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .schema import checked, in_range


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    #: seconds before the second consecutive restart (the first is immediate)
    initial: float = checked(in_range(0, 3600), default=0.5)
    #: growth per consecutive restart
    factor: float = checked(in_range(1, 100), default=2.0)
    #: cap on any single delay, seconds
    max: float = checked(in_range(0, 86400), default=60.0)
    #: each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]
    jitter: float = checked(in_range(0, 1), default=0.2)
    #: a worker up this long (seconds) has its consecutive-restart count reset
    reset_after: float = checked(in_range(0, 86400), default=60.0)
    #: more restarts than this within restart_window -> failed
    max_restarts: int = checked(in_range(0, 100000), default=10)
    restart_window: float = checked(in_range(0, 86400, above=0), default=300.0)


def exponential_delay(step: int, policy: RestartPolicy, rng: random.Random | None = None) -> float:
    """``initial * factor**step`` seconds, capped at ``max``, with jitter (step is 0-based)."""
    base = min(policy.max, policy.initial * policy.factor ** min(step, 1000))
    if policy.jitter:
        base *= 1.0 + (rng or random).uniform(-policy.jitter, policy.jitter)
    return max(0.0, min(policy.max, base))


def reconnect_delay(attempt: int, policy: RestartPolicy, rng: random.Random | None = None) -> float:
    """Seconds a worker waits before WhatsApp connection attempt ``attempt`` + 1 (1-based).

    The same curve as restarts, one level down: the worker retries its connection itself
    (max_reconnect_attempts times) before it exits and the supervisor's backoff takes over.
    """
    return exponential_delay(max(0, attempt - 1), policy, rng)
