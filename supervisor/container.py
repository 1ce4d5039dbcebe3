"""BotContainer: one bot's life in the supervisor (the original design's BotContainer).

It owns the bot's state machine (protocol.states.TRANSITIONS, walked only by ``_transition``),
its current worker process, its restart bookkeeping, its event history and its listeners.
It does no I/O of its own: spawning, publishing and timers go through the Runtime, which the
Supervisor implements and tests replace. What the supervisor feeds in (messages, health
looks) is supervisor/intake.py; what it shows (history entries, status) supervisor/views.py.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter, deque
from enum import Enum
from typing import Any, Callable, Protocol

from protocol import BotStatus, ContainerState, ErrorEvent, EventType, exit_codes
from protocol.config import BotConfig
from protocol.states import PROCESS_STATES, TRANSITIONS

from . import health
from .intake import STATUS_SAMPLE_AGE_S, MessageIntake
from .restart import ExitAction, backoff_delay, classify_exit, within_intensity
from .timers import Timer
from .views import ContainerEvent, ContainerStatus, as_event, iso

__all__ = ["BotContainer", "ContainerEvent", "ContainerStatus", "InvalidTransition", "Runtime", "StopIntent", "iso"]

log = logging.getLogger("botvisor.container")
S = ContainerState
#: seconds a stale worker gets between SIGTERM and SIGKILL (at most; stop_timeout if shorter).
#: Its loop has not run for heartbeat_timeout, and only the loop acts on SIGTERM: the grace
#: serves just a loop that comes back within it, so it is short, and a hang is replaced within
#: heartbeat_timeout + 0.5 s (bench)
STALE_GRACE_S = 0.25


class InvalidTransition(RuntimeError):
    pass


class StopIntent(Enum):
    """Why a worker is being stopped: decides what happens when it has exited."""

    STOP = "stop"  # operator or shutdown: end in stopped
    RESTART_NOW = "restart-now"  # operator restart or changed config: start again at once, not a crash
    RECOVER = "recover"  # unhealthy (stale, over memory): a restart under the policy, counted


class Runtime(Protocol):
    """What a container needs from the supervisor around it."""

    def spawn(self, container: BotContainer) -> Any: ...
    def watch(self, container: BotContainer) -> None: ...
    def unwatch(self, container: BotContainer) -> None: ...
    def publish_state(self, container: BotContainer, previous: ContainerState) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class BotContainer(MessageIntake):
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

    def get_status(self, sample_age: float = STATUS_SAMPLE_AGE_S) -> ContainerStatus:
        """The container's status, with RSS and CPU sampled at most ``sample_age`` ago."""
        return ContainerStatus(**self.status_fields(sample_age))

    def status_fields(self, sample_age: float = STATUS_SAMPLE_AGE_S) -> dict[str, Any]:
        """ContainerStatus's fields as a plain dict: what the ``status`` command sends. Built
        directly, since 200 dataclasses and then 200 dicts of them were half of a status's
        handling (its answer waited on it under a busy fleet)."""
        now = self.clock()
        self._sample_resources(now, sample_age)
        running = self.process is not None
        return {
            "container_id": self.container_id,
            "bot_status": self.bot_status,
            "container_state": self.state,
            "is_healthy": self.is_container_healthy(),
            "last_heartbeat": iso(self._last_heartbeat_wall),
            "connection_attempts": self.connection_attempts,
            "creds_last_updated": iso(self.creds_last_updated),
            "event_history_size": len(self.history),
            "pid": self.process.pid if running else None,
            "restarts": self.restarts,
            "uptime": round(now - self._started_at, 3) if self._started_at is not None and running else None,
            "last_exit": self.last_exit,
            "next_restart_at": iso(self.next_restart_at) if self.state is S.BACKOFF else None,
            "reason": self.reason,
            "events_total": sum(self.events_total.values()),
            "events_lost": self.events_lost,
            "rss": self.rss if running else 0,
            "cpu": self.cpu if running else 0.0,
        }

    def on_container_event(self, event_type: str, callback: Callable[[ContainerEvent], Any]) -> None:
        """Call ``callback(event)`` for each event of ``event_type`` (or ``state``, or ``*``)."""
        allowed = {t.value for t in EventType} | {"state", "*"}
        if event_type not in allowed:
            raise ValueError(f"unknown event type {event_type!r} (one of {', '.join(sorted(allowed))})")
        self.listeners.setdefault(event_type, []).append(callback)

    on = on_container_event

    def get_event_history(self, limit: int | None = None) -> list[ContainerEvent]:
        entries = list(self.history)
        return [as_event(entry) for entry in (entries[-limit:] if limit else entries)]

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
        self._started_at = self.clock()
        self.connection_attempts = 0
        self.bot_status = BotStatus.LOADING
        try:
            self.process = self.runtime.spawn(self)
            # the hello must come within the heartbeat timeout of the fork, not of the request:
            # the first spawn waits for the forkserver's own start (seconds, with neonize preloaded)
            self._last_seen = self.clock()
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
