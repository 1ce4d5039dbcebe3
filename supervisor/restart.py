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
from enum import Enum

from protocol import exit_codes
from protocol.backoff import RestartPolicy, exponential_delay, reconnect_delay

__all__ = ["RestartPolicy", "ExitAction", "backoff_delay", "classify_exit", "exponential_delay",
           "reconnect_delay", "within_intensity"]


def backoff_delay(consecutive: int, policy: RestartPolicy, rng: random.Random | None = None) -> float:
    """Seconds to wait before restart number ``consecutive`` (1-based) of a crash streak.

    The first restart is immediate: a worker that ran fine and died once comes straight back.
    """
    if consecutive <= 1:
        return 0.0
    return exponential_delay(consecutive - 2, policy, rng)


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
