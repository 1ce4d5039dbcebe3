"""The restart policy: when a dead worker comes back, and when the supervisor gives up.

Everything about restarting lives here, stated once (the [supervisor.backoff] table, which a
bot may override key by key):

* Exponential backoff. The first restart after a healthy run is immediate; each further
  consecutive restart waits ``initial * factor**(n-1)`` seconds, capped at ``max``, spread by
  +-``jitter`` (a fraction) so a fleet that crashed together does not come back together.
* The count of consecutive restarts resets once a worker has stayed up ``reset_after`` seconds.
* Intensity, as in Erlang/OTP: more than ``max_restarts`` restarts within ``restart_window``
  seconds and the container goes to ``failed`` until an operator starts it again. Every exit
  counts, however long the worker ran.
* Exit codes (protocol.exit_codes): OK after a stop request -> stopped; FATAL -> failed at
  once; anything else or a signal -> restart.

The functions are pure (time and randomness are passed in) and tested without processes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from protocol import exit_codes
from protocol.schema import checked, in_range


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


def backoff_delay(consecutive: int, policy: RestartPolicy, rng: random.Random | None = None) -> float:
    """Seconds to wait before restart number ``consecutive`` (1-based) of a crash streak.

    The first restart is immediate: a worker that ran fine and died once comes straight back.
    """
    if consecutive <= 1:
        return 0.0
    return exponential_delay(consecutive - 2, policy, rng)


def reconnect_delay(attempt: int, policy: RestartPolicy, rng: random.Random | None = None) -> float:
    """Seconds a worker waits before WhatsApp connection attempt ``attempt`` + 1 (1-based).

    The same curve as restarts, one level down: the worker retries its connection itself
    (max_reconnect_attempts times) before it exits and the supervisor's backoff takes over.
    """
    return exponential_delay(max(0, attempt - 1), policy, rng)


def within_intensity(
    restart_times: Sequence[float], now: float, policy: RestartPolicy
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at ``now``; return the kept history and whether it is allowed.

    ``restart_times`` are monotonic timestamps of earlier restarts; those older than the
    window are dropped. Allowed while the window holds at most ``max_restarts`` restarts.
    """
    kept = tuple(t for t in restart_times if now - t < policy.restart_window) + (now,)
    return kept, len(kept) <= policy.max_restarts


class ExitAction(Enum):
    #: the worker stopped because it was asked to
    STOP = "stop"
    #: restart under the backoff and intensity rules
    RESTART = "restart"
    #: fatal for this bot: failed, no automatic restart
    FAIL = "fail"


def classify_exit(exitcode: int, *, stop_requested: bool) -> ExitAction:
    """What a worker's end means. A requested stop wins over how the process ended."""
    match exitcode:
        case _ if stop_requested:
            return ExitAction.STOP
        case exit_codes.FATAL:
            return ExitAction.FAIL
        case _:
            # exit 0 without a request is still unexpected: a bot must not quietly vanish
            return ExitAction.RESTART
