"""What the supervisor feeds a container: its current worker's messages (seq, state, history),
the memory guard on heartbeats, and the liveness figures the health looks read.

A mixin of BotContainer (supervisor/container.py), which holds the state these read and write;
the lifecycle they call (``_transition``, ``recover``, ``_notify``) lives there.
"""

from __future__ import annotations

import logging
from typing import Any

from protocol import BotStatus, ContainerState, Event, EventType, Message
from protocol.wire import KIND_NAME

from . import health
from .views import as_event

log = logging.getLogger("botvisor.container")
S = ContainerState
#: a status answers with RSS and CPU sampled at most STATUS_STALE_S ago (sampling first what is
#: older), and afterwards samples again what is older than STATUS_SAMPLE_AGE_S, a few workers
#: at a time (commands/status.py): a status of 200 bots that read /proc for each before
#: answering kept the operator waiting on the loop's busiest turn
STATUS_SAMPLE_AGE_S = 1.0
STATUS_STALE_S = 5.0
#: max_memory_mb is checked on heartbeats against a sample at most this old
MEMORY_SAMPLE_AGE_S = 1.0

#: the event types that change a container's state (see _on_state_event)
_STATE_EVENTS = frozenset({EventType.CONNECTION_UPDATE.value, EventType.CREDS_UPDATE.value, EventType.ERROR.value})


class MessageIntake:
    """BotContainer's intake half (see the module docstring)."""

    def accepts(self, message: Message) -> bool:
        """True when ``message`` comes from this container's current worker process."""
        return self.process is not None and message.pid == self.process.pid

    def on_message(self, message: Message) -> str:
        """Take in one message of the current worker (its dataclass, or the Struct the
        supervisor decodes: both are read by attribute only); returns its kind's name."""
        now = self.clock()
        self._last_seen = now
        seq = message.seq
        if seq == self._next_seq:  # nearly always: the next message of the worker's stream
            self._next_seq = seq + 1
        elif seq > self._next_seq:  # the worker numbers from 0 (it could not hand these over)
            lost = seq - self._next_seq
            self._next_seq = seq + 1
            self.events_lost += lost
            log.warning("bot %s: %d message(s) lost before seq %d", self.bot.id, lost, seq)
        kind = KIND_NAME[type(message)]
        if kind == "event":  # most of the traffic
            data = message.data  # type: ignore[union-attr]
            name = message.type._value_  # type: ignore[union-attr]
            if name in _STATE_EVENTS:  # the others (messages, presence, receipts...) change no state
                self._on_state_event(name, message, data)  # type: ignore[arg-type]
            self.events_total[name] += 1
            # the history keeps the data as it came (a Struct): its mapping is built when read
            entry = (name, data, message.ts, message.pid, seq)
            self.history.append(entry)
            if self.listeners:
                self._notify(as_event(entry))
        elif kind == "heartbeat":
            self._last_heartbeat_wall = message.ts
            self.bot_status = message.bot_status  # type: ignore[union-attr]
            self.connection_attempts = message.connection_attempts  # type: ignore[union-attr]
            if self.bot.max_memory_mb is not None:
                self._check_memory()
        elif kind == "hello" and self.state is S.INITIALIZING:
            self._running_since = now
            self.bot_status = BotStatus.LOADING
            self._transition(S.RUNNING, "worker said hello")
        return kind

    def _on_state_event(self, name: str, event: Event, data: Any) -> None:
        if name == EventType.CONNECTION_UPDATE:
            if data.connection == "open":
                self.bot_status = BotStatus.ONLINE
                self.connection_attempts = 0
            elif data.connection == "close":
                self.bot_status = BotStatus.OFFLINE
                self.connection_attempts = data.attempt or self.connection_attempts
            elif data.connection == "connecting":
                self.bot_status = BotStatus.LOADING
                self.connection_attempts = data.attempt or self.connection_attempts
        elif name == EventType.CREDS_UPDATE:
            self.creds_last_updated = data.last_updated or event.ts
        elif name == EventType.ERROR and data.fatal:
            self._last_error = data

    def _check_memory(self) -> None:
        """On every heartbeat: a worker over max_memory_mb is restarted under the policy."""
        limit = self.bot.max_memory_mb
        if limit is None or self.process is None or self.state is not S.RUNNING:
            return
        self._sample_resources(self.clock(), MEMORY_SAMPLE_AGE_S)
        if self.rss > limit * 1024 * 1024:
            self.recover(f"over its memory limit: rss {self.rss / 2**20:.0f} MiB > max_memory_mb {limit}")

    def sample_older_than(self, max_age: float) -> bool:
        """Sample RSS and CPU when the last sample is older than ``max_age`` (or of another
        worker); True when it read /proc."""
        return self._sample_resources(self.clock(), max_age)

    def _sample_resources(self, now: float, max_age: float) -> bool:
        """RSS and CPU from /proc, unless sampled less than ``max_age`` ago (at 200 bots a status
        that sampled every worker spent ~25 ms of CPU in those reads); True when it read."""
        if self.process is None or not self.process.pid:
            return False
        if self._sampled is not None and self._sampled[0] is self.process and now - self._sampled[1] < max_age:
            return False
        self.rss, self.cpu = self.process.resources()
        self._sampled = (self.process, now)
        return True

    def stale_at(self) -> float | None:
        """The clock() time at which this worker goes stale unless heard from (None: no worker
        to time, or one already being stopped)."""
        if self.process is None or self.state is S.STOPPING:
            return None
        return health.stale_at(self._last_seen, self.bot.stale_after)

    def heartbeat_age(self) -> float | None:
        """Seconds since the worker's loop was last heard from (None: no worker)."""
        if self.process is None or self._last_seen is None:
            return None
        return max(0.0, self.clock() - self._last_seen)
