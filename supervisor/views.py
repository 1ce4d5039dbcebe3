"""What a container shows outside: its history entries as listeners and readers get them, and
its status (the original design's ContainerStatus)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from protocol import BotStatus, ContainerState
from protocol.wire import as_mapping


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """An entry of the event history, as handed to listeners."""

    type: str
    data: dict[str, Any]
    #: unix seconds
    timestamp: float
    #: the worker that sent it and its seq there: with server and bot, what names the event
    #: (the gateway recovers a seq gap from the history with them)
    pid: int = 0
    seq: int = -1


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    container_id: str
    bot_status: BotStatus
    container_state: ContainerState
    is_healthy: bool
    last_heartbeat: str | None
    connection_attempts: int
    creds_last_updated: str | None
    event_history_size: int
    pid: int | None
    restarts: int
    uptime: float | None
    last_exit: str | None
    next_restart_at: str | None
    reason: str | None
    events_total: int
    events_lost: int
    rss: int
    cpu: float


def as_event(entry: tuple[str, Any, float, int, int]) -> ContainerEvent:
    """A history entry as listeners and readers see it: its data as plain mappings. Built on
    read, not per event: most events are never read back (the history is a ring)."""
    name, data, timestamp, pid, seq = entry
    return ContainerEvent(name, as_mapping(data), timestamp, pid, seq)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
