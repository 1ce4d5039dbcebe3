"""BotContainer: one bot's life in the supervisor (the original design's BotContainer).

It owns the bot's state machine (protocol.states.TRANSITIONS, walked only by ``_transition``),
its current worker process, its restart bookkeeping, its event history and its listeners.
It does no I/O of its own: spawning, publishing and timers go through the Runtime, which the
Supervisor implements and tests replace.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Protocol

from protocol import (
    BotStatus,
    ContainerState,
    ErrorEvent,
    Event,
    EventType,
    Message,
    exit_codes,
)
from protocol.config import BotConfig
from protocol.wire import KIND_NAME, as_mapping
from protocol.states import PROCESS_STATES, TRANSITIONS

from . import health
from .restart import ExitAction, backoff_delay, classify_exit, within_intensity
from .timers import Timer

log = logging.getLogger("botvisor.container")
S = ContainerState
#: seconds a stale worker gets between SIGTERM and SIGKILL (at most; stop_timeout if shorter).
#: Its loop has not run for heartbeat_timeout, and only the loop acts on SIGTERM: the grace
#: serves just a loop that comes back within it, so it is short, and a hang is replaced within
#: heartbeat_timeout + 0.5 s (bench)
STALE_GRACE_S = 0.25
#: a status shows RSS and CPU sampled at most this long ago (each sample reads /proc twice)
STATUS_SAMPLE_AGE_S = 1.0
#: max_memory_mb is checked on heartbeats against a sample at most this old
MEMORY_SAMPLE_AGE_S = 1.0


class InvalidTransition(RuntimeError):
    pass


class StopIntent(Enum):
    """Why a worker is being stopped: decides what happens when it has exited."""

    STOP = "stop"  # operator or shutdown: end in stopped
    RESTART_NOW = "restart-now"  # operator restart or changed config: start again at once, not a crash
    RECOVER = "recover"  # unhealthy (stale, over memory): a restart under the policy, counted


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


class Runtime(Protocol):
    """What a container needs from the supervisor around it."""

    def spawn(self, container: BotContainer) -> Any: ...
    def watch(self, container: BotContainer) -> None: ...
    def unwatch(self, container: BotContainer) -> None: ...
    def publish_state(self, container: BotContainer, previous: ContainerState) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


#: the event types that change a container's state (see _on_state_event)
_STATE_EVENTS = frozenset({EventType.CONNECTION_UPDATE.value, EventType.CREDS_UPDATE.value, EventType.ERROR.value})


def _as_event(entry: tuple[str, Any, float, int, int]) -> ContainerEvent:
    """A history entry as listeners and readers see it: its data as plain mappings. Built on
    read, not per event: most events are never read back (the history is a ring)."""
    name, data, timestamp, pid, seq = entry
    return ContainerEvent(name, as_mapping(data), timestamp, pid, seq)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class BotContainer:
    def __init__(self, bot: BotConfig, runtime: Runtime, server_name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bot = bot
        self.runtime = runtime
        self.server_name = server_name
        self.container_id = f"{server_name}:{bot.id}"
        self.clock = clock
        self.state = S.STOPPED
        self.process: Any = None
        self.reason: str | None = None
        self.bot_status = BotStatus.OFFLINE
        self.connection_attempts = 0
        self.creds_last_updated: float | None = None
        #: (type, data, timestamp, pid, seq) per event: a ContainerEvent when read (see _as_event)
        self.history: deque[tuple[str, Any, float, int, int]] = deque(maxlen=bot.event_history)
        self.listeners: dict[str, list[Callable[[ContainerEvent], Any]]] = {}
        self.restarts = 0
        self.last_exit: str | None = None
        self.next_restart_at: float | None = None
        self.events_total: Counter[str] = Counter()
        self.events_lost = 0
        self.rss, self.cpu = 0, 0.0
        self.state_seq = 0
        self._stop_intent: StopIntent | None = None
        self._last_error: ErrorEvent | None = None
        self._last_seen: float | None = None
        self._last_heartbeat_wall: float | None = None
        self._running_since: float | None = None
        self._started_at: float | None = None
        #: the seq expected next from the current worker (its stream is numbered from 0; the
        #: supervisor hands over only the current worker's messages, see accepts)
        self._next_seq = 0
        self._streak = 0
        self._restart_times: tuple[float, ...] = ()
        self._timer: Timer | None = None
        #: unix seconds a temporary ban ends; the container starts itself then (docs/neonize.md)
        self.banned_until: float | None = None
        #: (process, clock()) of the last resources() sample
        self._sampled: tuple[Any, float] | None = None

    # -- the original API ----------------------------------------------------------------
    def start_refused(self, force: bool = False) -> str | None:
        """Why an operator's start is refused now (a temporary ban not yet over), or None."""
        if force or self.banned_until is None or time.time() >= self.banned_until:
            return None
        return (f"temporarily banned until {iso(self.banned_until)} (WhatsApp's expiry); it starts by itself then. "
                "Connecting earlier can prolong the ban: force the start to do it anyway")

    def _ban_over(self) -> None:
        self._timer = None
        if self.state is S.FAILED and self.banned_until is not None:
            log.info("bot %s: the temporary ban has expired; starting it again", self.bot.id)
            self.start()

    def start(self) -> None:
        """Start the worker (from stopped, failed or backoff); a no-op while one runs."""
        self.banned_until = None  # the ban is over, or the operator forced the start
        if self.state in PROCESS_STATES:
            if self.state is S.STOPPING and self._stop_intent is StopIntent.STOP:
                self._stop_intent = StopIntent.RESTART_NOW
            return
        if self.state is S.FAILED:  # an operator's start is a fresh chance
            self._streak, self._restart_times = 0, ()
        self._cancel_timer()
        gate = getattr(self.runtime, "start_gate", None)
        if gate is not None and not gate(self):
            return  # [cluster]: the supervisor starts it again once the bot's lease is held
        self._spawn("started")

    def start_later(self, delay: float) -> None:
        """Start in ``delay`` seconds (a staggered boot) unless stopped before then."""
        self._cancel_timer()
        self._timer = self.runtime.call_later(delay, self.start)

    def stop(self, reason: str = "stop requested") -> None:
        """Stop the worker: SIGTERM to its process group, SIGKILL after stop_timeout."""
        if self.state in (S.BACKOFF, S.FAILED):
            self._cancel_timer()
            self._transition(S.STOPPED, reason)
        elif self.state in PROCESS_STATES:
            self._terminate(StopIntent.STOP, reason)
        else:
            self._cancel_timer()  # stopped with a staggered start pending: it must not start later

    def restart(self, reason: str = "restart requested") -> None:
        if self.state in (S.INITIALIZING, S.RUNNING):
            self._terminate(StopIntent.RESTART_NOW, reason)
        elif self.state is S.STOPPING:
            self._stop_intent = StopIntent.RESTART_NOW
        else:
            self.start()

    def get_status(self) -> ContainerStatus:
        now = self.clock()
        self._sample_resources(now, STATUS_SAMPLE_AGE_S)
        return ContainerStatus(
            container_id=self.container_id,
            bot_status=self.bot_status,
            container_state=self.state,
            is_healthy=self.is_container_healthy(),
            last_heartbeat=iso(self._last_heartbeat_wall),
            connection_attempts=self.connection_attempts,
            creds_last_updated=iso(self.creds_last_updated),
            event_history_size=len(self.history),
            pid=self.process.pid if self.process is not None else None,
            restarts=self.restarts,
            uptime=round(now - self._started_at, 3) if self._started_at is not None and self.process else None,
            last_exit=self.last_exit,
            next_restart_at=iso(self.next_restart_at) if self.state is S.BACKOFF else None,
            reason=self.reason,
            events_total=sum(self.events_total.values()),
            events_lost=self.events_lost,
            rss=self.rss if self.process is not None else 0,
            cpu=self.cpu if self.process is not None else 0.0,
        )

    def on_container_event(self, event_type: str, callback: Callable[[ContainerEvent], Any]) -> None:
        """Call ``callback(event)`` for each event of ``event_type`` (or ``state``, or ``*``)."""
        allowed = {t.value for t in EventType} | {"state", "*"}
        if event_type not in allowed:
            raise ValueError(f"unknown event type {event_type!r} (one of {', '.join(sorted(allowed))})")
        self.listeners.setdefault(event_type, []).append(callback)

    on = on_container_event

    def get_event_history(self, limit: int | None = None) -> list[ContainerEvent]:
        entries = list(self.history)
        return [_as_event(entry) for entry in (entries[-limit:] if limit else entries)]

    def is_container_healthy(self) -> bool:
        return self.state is S.RUNNING and health.is_fresh(self._last_seen, self.clock(), self.bot.stale_after)

    def get_credential_age(self) -> float | None:
        """Milliseconds since the credentials were last updated (None: never seen)."""
        if self.creds_last_updated is None:
            return None
        return max(0.0, (time.time() - self.creds_last_updated) * 1000)

    def get_bot_instance(self) -> BotConfig:
        return self.bot

    def get_bot(self, timeout: float | None = None) -> Any:
        """A BotHandle on the bot in the worker (protocol/handle.py): its calls block, so
        never call them from a listener, which runs inside the supervisor's loop."""
        from protocol.handle import BotHandle

        return BotHandle.for_config(self.runtime.config, self.bot.id, timeout=timeout)

    # -- what the supervisor feeds in ----------------------------------------------------
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
                self._notify(_as_event(entry))
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

    def on_exit(self, exitcode: int | None) -> None:
        """The worker process ended (its sentinel fired): decide what comes next."""
        self.runtime.unwatch(self)
        self.process.close()
        self.process = None
        now = self.clock()
        self.last_exit = exit_codes.describe(exitcode)
        self.bot_status = BotStatus.OFFLINE
        intent, self._stop_intent = self._stop_intent, None
        self._cancel_timer()
        healthy_for = now - self._running_since if self._running_since is not None else 0.0
        self._running_since = None
        if intent is StopIntent.STOP:
            self._transition(S.STOPPED, self.reason or "stopped")
            return
        if intent is StopIntent.RESTART_NOW:
            self._transition(S.STOPPED, "restarting")
            self._spawn("restarted")
            return
        action = classify_exit(exitcode if exitcode is not None else -signal.SIGKILL, stop_requested=False)
        if action is ExitAction.FAIL:
            error = self._last_error
            why = f"{error.code}: {error.message}" if error else f"worker ended with {self.last_exit}"
            if error is not None and error.code == "temporary-ban" and error.expires_at is not None:
                self.banned_until = error.expires_at  # start again by itself once WhatsApp lifts the ban
                why += f"; starts again when the ban expires at {iso(error.expires_at)}"
                self._timer = self.runtime.call_later(max(0.0, error.expires_at - time.time()), self._ban_over)
            self._transition(S.FAILED, why)
            return
        self._schedule_restart(now, healthy_for, intent)

    def check_health(self, now: float) -> None:
        """Called periodically: replace a worker whose loop has gone quiet."""
        if self.state in (S.INITIALIZING, S.RUNNING) and not health.is_fresh(self._last_seen, now, self.bot.stale_after):
            quiet = now - self._last_seen if self._last_seen is not None else 0.0
            # a loop that stopped answering will not act on SIGTERM either: short grace, then SIGKILL
            self._terminate(StopIntent.RECOVER, f"unhealthy: no heartbeat for {quiet:.1f} s "
                                                f"(timeout {self.bot.stale_after:g} s)",
                            grace=min(self.bot.stop_timeout, STALE_GRACE_S))

    def _check_memory(self) -> None:
        """On every heartbeat: a worker over max_memory_mb is restarted under the policy."""
        limit = self.bot.max_memory_mb
        if limit is None or self.process is None or self.state is not S.RUNNING:
            return
        self._sample_resources(self.clock(), MEMORY_SAMPLE_AGE_S)
        if self.rss > limit * 1024 * 1024:
            self.recover(f"over its memory limit: rss {self.rss / 2**20:.0f} MiB > max_memory_mb {limit}")

    def _sample_resources(self, now: float, max_age: float) -> None:
        """RSS and CPU from /proc (two reads), unless sampled less than ``max_age`` ago: at 200
        bots a status that sampled every worker spent ~25 ms of CPU in those reads."""
        if self.process is None or not self.process.pid:
            return
        if self._sampled is not None and self._sampled[0] is self.process and now - self._sampled[1] < max_age:
            return
        self.rss, self.cpu = self.process.resources()
        self._sampled = (self.process, now)

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

    def recover(self, reason: str) -> None:
        """Restart the worker under the restart policy (e.g. over its memory limit)."""
        if self.state in (S.INITIALIZING, S.RUNNING):
            self._terminate(StopIntent.RECOVER, reason)

    def update_config(self, bot: BotConfig) -> None:
        self.bot = bot
        self.history = deque(self.history, maxlen=bot.event_history)

    # -- internals -------------------------------------------------------------------------
    def _schedule_restart(self, now: float, healthy_for: float, intent: StopIntent | None,
                          at_once: bool = True) -> None:
        policy = self.bot.backoff
        if healthy_for >= policy.reset_after:
            self._streak = 0
        self._streak += 1
        self._restart_times, allowed = within_intensity(self._restart_times, now, policy)
        cause = self.reason if intent is StopIntent.RECOVER else f"worker ended with {self.last_exit}"
        if not allowed:
            self._transition(S.FAILED, f"{cause}; gave up after more than {policy.max_restarts} restarts "
                                       f"within {policy.restart_window:g} s")
            return
        delay = backoff_delay(self._streak, policy)
        self.next_restart_at = time.time() + delay
        self._transition(S.BACKOFF, f"{cause}; restart {self._streak} of the streak in {delay:.2f} s")
        self.restarts += 1
        if delay <= 0 and at_once:
            self._spawn("restarted after a crash")
        else:
            self._timer = self.runtime.call_later(delay, lambda: self._spawn("restarted after backoff"))

    def _spawn(self, reason: str) -> None:
        self._timer = None
        self.next_restart_at = None
        self._last_error = None
        self._next_seq = 0
        self._last_seen = self.clock()  # the hello must come within the heartbeat timeout
        self._started_at = self.clock()
        self.connection_attempts = 0
        self.bot_status = BotStatus.LOADING
        try:
            self.process = self.runtime.spawn(self)
        except Exception as exc:  # e.g. fork failed, or the forkserver died: a crash at birth
            log.exception("bot %s: could not start its worker", self.bot.id)
            self.bot_status = BotStatus.OFFLINE
            self.last_exit = "never started"
            self.reason = f"could not start its worker: {exc.__class__.__name__}: {exc}"
            # never again from inside this call: a spawn that keeps failing must not recurse
            self._schedule_restart(self.clock(), 0.0, StopIntent.RECOVER, at_once=False)
            return
        self.runtime.watch(self)
        self._transition(S.INITIALIZING, reason)

    def _terminate(self, intent: StopIntent, reason: str, grace: float | None = None) -> None:
        if self.state is S.STOPPING:
            if intent is StopIntent.STOP:
                self._stop_intent = intent
            return
        self._stop_intent = intent
        self._transition(S.STOPPING, reason)
        self.process.signal_tree(signal.SIGTERM)
        self._timer = self.runtime.call_later(self.bot.stop_timeout if grace is None else grace, self._kill)

    def _kill(self) -> None:
        self._timer = None
        if self.process is not None and self.state is S.STOPPING:
            log.warning("bot %s: still alive after SIGTERM, sending SIGKILL", self.bot.id)
            self.process.signal_tree(signal.SIGKILL)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _transition(self, state: ContainerState, reason: str) -> None:
        previous = self.state
        if state not in TRANSITIONS[previous]:
            raise InvalidTransition(f"{self.container_id}: {previous} -> {state} is not allowed")
        self.state = state
        self.reason = reason
        log.info("bot %s: %s -> %s (%s)", self.bot.id, previous, state, reason)
        self.runtime.publish_state(self, previous)
        self.state_seq += 1  # state messages are numbered per bot from 0, like a worker's
        entry = {"state": state.value, "previous": previous.value, "reason": reason}
        self._notify(ContainerEvent("state", entry, time.time()))

    def _notify(self, event: ContainerEvent) -> None:
        if not self.listeners:  # the usual case, on every event
            return
        for callback in self.listeners.get(event.type, []) + self.listeners.get("*", []):
            try:
                callback(event)
            except Exception:  # one broken listener must not starve the others
                log.exception("bot %s: listener %r for %s raised", self.bot.id, callback, event.type)
