"""Liveness: a worker is alive when its process exists and its main loop was heard from lately.

Any message counts (a heartbeat or an event), because the worker's loop sends both; the loop
is single-threaded, so a fresh message proves it is making progress (docs/supervision.md).
"""

from __future__ import annotations


def is_fresh(last_seen: float | None, now: float, stale_after: float) -> bool:
    return last_seen is not None and now - last_seen <= stale_after


def check_interval(stale_after_values: list[float]) -> float:
    """How often to look for stale workers: a tenth of the shortest timeout, within 20 ms..1 s."""
    if not stale_after_values:
        return 1.0
    return min(1.0, max(0.02, min(stale_after_values) / 10))
