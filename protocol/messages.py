"""Every message on the event bus, as a frozen dataclass.

Workers send Hello, Heartbeat, Event and Bye; the supervisor adds StateChange (a container
changed state) and Notice (about the supervisor itself, e.g. a refused reload). All share
the header fields ``server``, ``bot``, ``pid``, ``seq`` and ``ts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .events import EventData, EventType
from .states import BotStatus, ContainerState

#: the ``bot`` of supervisor-level messages (Notice); '@' can never start a bot id
SUPERVISOR_BOT = "@supervisor"


class Kind(StrEnum):
    HELLO = "hello"
    HEARTBEAT = "heartbeat"
    EVENT = "event"
    BYE = "bye"
    STATE = "state"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class Hello:
    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    backend: str
    heartbeat_interval: float
    version: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    bot_status: BotStatus
    connection_attempts: int = 0
    #: events the worker itself could not hand to the supervisor (its queue was full)
    events_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    type: EventType
    data: EventData


@dataclass(frozen=True, slots=True)
class Bye:
    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    reason: str
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class StateChange:
    """A container changed state. ``seq`` counts the supervisor's state messages per bot."""

    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    state: ContainerState
    previous: ContainerState
    reason: str | None = None
    #: unix seconds, in ``backoff``
    next_restart_at: float | None = None
    #: how the last worker ended (``exit 70 (crash)``, ``SIGKILL``), when it did
    last_exit: str | None = None
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about the supervisor itself; ``bot`` is SUPERVISOR_BOT."""

    server: str
    bot: str
    pid: int
    seq: int
    ts: float
    level: str
    message: str


Message = Hello | Heartbeat | Event | Bye | StateChange | Notice

KIND_OF: dict[type, Kind] = {
    Hello: Kind.HELLO,
    Heartbeat: Kind.HEARTBEAT,
    Event: Kind.EVENT,
    Bye: Kind.BYE,
    StateChange: Kind.STATE,
    Notice: Kind.NOTICE,
}
CLASS_OF: dict[Kind, type] = {kind: cls for cls, kind in KIND_OF.items()}
