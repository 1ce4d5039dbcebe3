"""Liveness: a worker is alive when its process exists and its main loop was heard from lately.

Any message counts (a heartbeat or an event), because the worker's loop sends both; the loop
is single-threaded, so a fresh message proves it is making progress (docs/supervision.md).
"""

from __future__ import annotations

from collections.abc import Iterable


def is_fresh(last_seen: float | None, now: float, stale_after: float) -> bool:
    return last_seen is not None and now - last_seen <= stale_after


#: the longest the supervisor goes without looking
MAX_CHECK_INTERVAL = 1.0
#: a worker is stale only *past* its deadline: look just after it
PAST_DEADLINE = 0.001


def stale_at(last_seen: float | None, stale_after: float) -> float | None:
    """When a worker last heard from at ``last_seen`` goes stale (None: not yet timed)."""
    return None if last_seen is None else last_seen + stale_after


def next_check(deadlines: Iterable[float], now: float) -> float:
    """Seconds until the next look for stale workers: just past the earliest deadline, at most
    MAX_CHECK_INTERVAL. A look costs O(fleet), so none is made before any worker can be stale:
    with 1 s heartbeats and a 3 s timeout that is every ~2 s, and a stale worker is seen within
    a millisecond of its deadline instead of within a polling period."""
    earliest = min(deadlines, default=now + MAX_CHECK_INTERVAL)
    return min(MAX_CHECK_INTERVAL, max(0.0, earliest - now) + PAST_DEADLINE)
