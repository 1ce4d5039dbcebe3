"""When a worker heartbeats: on a beat its whole beat group shares, a group of at most
BEAT_GROUP_SIZE workers.

Heartbeats sent whenever each worker started make one supervisor wakeup each, and at 200 bots
a wakeup cost more than the heartbeat it carried; the supervisor reads a group's heartbeats in
one pass (supervisor/relay.py, BEAT_HOLD_S). But a group's workers also wake together, and an
event sent in that instant waits behind them: at 200 bots with 1 s heartbeats, p99 at 1,000
events/s was 2.5-3.5 ms in groups of 20, 2-13.5 ms in groups of 40 and 8 ms in groups of 100.
So a group has a size, and the fleet as many groups as that makes (bench/ISSUE18-notes.md §12).
The supervisor, which knows the fleet, passes the count in the worker's spec.
"""

from __future__ import annotations

import math
import zlib

#: workers that beat at one instant (the fleet is split into as many groups as that needs)
BEAT_GROUP_SIZE = 20
#: at most this many groups an interval (a fleet larger than this times the size beats in bigger groups)
MAX_BEAT_GROUPS = 50


def beat_groups(fleet_size: int) -> int:
    """How many beat groups a fleet of ``fleet_size`` workers has."""
    return max(1, min(MAX_BEAT_GROUPS, math.ceil(fleet_size / BEAT_GROUP_SIZE)))


def beat_phase(bot_id: str, groups: int) -> float:
    """Where in the interval this bot's group beats (0 <= phase < 1), the same in every
    worker: its group is fixed by the crc32 of its id."""
    return (zlib.crc32(bot_id.encode()) % groups) / groups


def next_beat_after(now: float, interval: float, phase: float = 0.0) -> float:
    """The next ``(k + phase) * interval`` on the monotonic clock, which every process of the
    host shares, so a group's workers beat together whenever each started. A beat is never
    sent later than ``interval`` after ``now``."""
    return (math.floor(now / interval - phase) + 1 + phase) * interval
